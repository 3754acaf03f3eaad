// Replays fuzz inputs (files or directories of files) through the libFuzzer
// entry point without libFuzzer: the seed corpus becomes a regression test
// under any compiler. Exits non-zero only if an input escapes as an exception
// other than loranull::error (which the entry point itself catches).
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

int replay(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
        std::fprintf(stderr, "replay: cannot read %s\n", file.string().c_str());
        return 1;
    }
    const std::vector<char> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    try {
        LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "replay: %s: uncaught exception: %s\n", file.string().c_str(), e.what());
        return 1;
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    int failures = 0, inputs = 0;
    for (int i = 1; i < argc; ++i) {
        const std::filesystem::path arg(argv[i]);
        if (std::filesystem::is_directory(arg)) {
            for (const auto& entry : std::filesystem::directory_iterator(arg))
                if (entry.is_regular_file()) failures += replay(entry.path()), ++inputs;
        } else {
            failures += replay(arg), ++inputs;
        }
    }
    std::printf("replayed %d inputs, %d failures\n", inputs, failures);
    return failures == 0 && inputs > 0 ? 0 : 1;
}
