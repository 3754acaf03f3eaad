// libFuzzer target for io::SafetensorsReader.
//
// Each input is written to a private temporary file (the reader takes a path),
// opened, and every tensor in it is read back: floating tensors as matrices of
// float and double, integer tensors as integers. Any loranull::error is the
// expected outcome for a bad file; anything else (another exception type, a
// sanitizer report, a hang) is a bug in the reader.
//
// Built by tests/fuzz/CMakeLists.txt with clang and
// -fsanitize=fuzzer,address,undefined when LORANULL_FUZZ=ON (see
// scripts/run-fuzzer.sh); the same file also links with a plain main
// (replay_main.cpp) so that every compiler replays the seed corpus as a test.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

#include <loranull/io/safetensors.hpp>

namespace {

/// One file per process (libFuzzer's -jobs run several), removed after each
/// input: libFuzzer leaves through _Exit, which runs no destructors.
const std::filesystem::path& input_path() {
    static const std::filesystem::path path =
        std::filesystem::temp_directory_path() / ("loranull_fuzz_" + std::to_string(::getpid()) + ".safetensors");
    return path;
}

struct RemoveAfterInput {
    ~RemoveAfterInput() {
        std::error_code ec;
        std::filesystem::remove(input_path(), ec);
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::filesystem::path& path = input_path();
    const RemoveAfterInput cleanup;
    {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
        if (!out) return 0;  // cannot exercise the reader without its file
    }
    try {
        loranull::io::SafetensorsReader reader(path);
        for (const auto& [name, info] : reader.tensors()) {
            try {
                if (loranull::io::is_floating(info.dtype)) {
                    const auto f = reader.read_matrix<float>(name);
                    const auto d = reader.read_matrix<double>(name);
                    if (f.rows() != d.rows() || f.cols() != d.cols()) __builtin_trap();
                } else {
                    const auto values = reader.read_integers(name);
                    (void)values;
                }
            } catch (const loranull::error&) {
                // a tensor that is not a matrix, or of an unsupported dtype
            }
        }
        for (const auto& [key, value] : reader.metadata()) (void)key, (void)value;
    } catch (const loranull::error&) {
        // a malformed file: the expected, clear failure
    }
    return 0;
}
