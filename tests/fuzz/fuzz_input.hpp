#pragma once
// What the fuzz targets share: one input split into the files of a folder,
// and the private folder those files are written to.
//
// A target that reads several files (config.json and the index of an HF
// folder, adapter_config.json and its weights) takes them from one input,
// separated by the line "--8<--" (fuzz_input::separator): libFuzzer mutates
// each part and, with the separator in the dictionary, moves parts around.
// Each target catches loranull::error, the clear failure a bad input must
// give; anything else escapes (an uncaught exception aborts under libFuzzer
// and fails replay_main), as does every sanitizer report.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

namespace fuzz_input {

inline constexpr std::string_view separator = "\n--8<--\n";

/// The input cut at the first n - 1 separators: exactly n parts (missing
/// ones empty; the last one keeps any further separators).
inline std::vector<std::string_view> parts(const std::uint8_t* data, std::size_t size, std::size_t n) {
    std::string_view rest(reinterpret_cast<const char*>(data), size);
    std::vector<std::string_view> out;
    while (out.size() + 1 < n) {
        const std::size_t at = rest.find(separator);
        if (at == std::string_view::npos) break;
        out.push_back(rest.substr(0, at));
        rest.remove_prefix(at + separator.size());
    }
    out.push_back(rest);
    out.resize(n);
    return out;
}

/// A folder of this process's own (libFuzzer's -jobs run several processes),
/// emptied when the Scratch goes out of scope, i.e. after each input:
/// libFuzzer leaves through _Exit, which runs no static destructors.
class Scratch {
public:
    Scratch() {
        std::filesystem::remove_all(dir());
        std::filesystem::create_directories(dir());
    }
    ~Scratch() {
        std::error_code ec;
        std::filesystem::remove_all(dir(), ec);
    }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;

    static const std::filesystem::path& dir() {
        static const std::filesystem::path path =
            std::filesystem::temp_directory_path() / ("loranull_fuzz_" + std::to_string(::getpid()));
        return path;
    }
    /// dir()/name holding `bytes`; false if the file could not be written.
    bool write(const std::string& name, std::string_view bytes) const {
        std::ofstream out(dir() / name, std::ios::binary | std::ios::trunc);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        return bool(out);
    }
    std::filesystem::path path(const std::string& name) const { return dir() / name; }
};

}  // namespace fuzz_input
