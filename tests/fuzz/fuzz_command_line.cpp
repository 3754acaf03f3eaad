// libFuzzer target for the command lines of the four tools: the first byte
// picks loranull-init, -build, -eval or -tokenize, the rest is argv[1..]
// separated by NUL bytes, parsed by that tool's parse_options (what its main
// runs first). A command line either parses or fails with the tools' usage
// error (exit 2) or a loranull::error; anything else escapes. -h/--help print
// and exit: inputs holding them are skipped.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "../../tools/loranull-build/options.hpp"
#include "../../tools/loranull-eval/options.hpp"
#include "../../tools/loranull-init/options.hpp"
#include "../../tools/loranull-tokenize/options.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0 || size > 4096) return 0;
    const unsigned tool = data[0] % 4;
    std::vector<std::string> args = {"tool"};
    std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
    while (!rest.empty()) {
        const std::size_t nul = rest.find('\0');
        args.emplace_back(rest.substr(0, nul));
        rest.remove_prefix(nul == std::string_view::npos ? rest.size() : nul + 1);
    }
    std::vector<char*> argv;
    for (std::string& a : args) {
        if (a == "-h" || a == "--help") return 0;
        argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    const int argc = static_cast<int>(args.size());
    namespace t = loranull::tools;
    try {
        switch (tool) {
            case 0: (void)t::init::parse_options(argc, argv.data()); break;
            case 1: (void)t::build::parse_options(argc, argv.data()); break;
            case 2: (void)t::eval::parse_options(argc, argv.data()); break;
            default: (void)t::tokenize::parse_options(argc, argv.data()); break;
        }
    } catch (const t::UsageError&) {
    } catch (const loranull::pipeline::BuildError&) {
    } catch (const loranull::error&) {
    }
    return 0;
}
