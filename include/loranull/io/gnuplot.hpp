#pragma once
// Plots through gnuplot (Debian's gnuplot-nox): the program writes the data
// and a script beside the PNG, so a reader can restyle a figure without
// rerunning anything. PNGs go through a temporary name like every output.

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

#include "loranull/io/atomic_file.hpp"

namespace loranull::io {

inline bool gnuplot_available() { return std::system("gnuplot --version > /dev/null 2>&1") == 0; }

/// Writes `script` (which must `set output` to the quoted token @OUT@) next to
/// `png` as png.gp and runs it in png's folder (so data files are named
/// relative to it and the folder can move), into png.tmp, then renames.
/// Returns false (and says why on stderr) when gnuplot is missing or fails.
inline bool plot_png(const std::filesystem::path& png, std::string script) {
    const std::string tmp = png.filename().string() + ".tmp";
    const std::string token = "@OUT@";
    for (std::size_t at = script.find(token); at != std::string::npos; at = script.find(token))
        script.replace(at, token.size(), tmp);
    const std::filesystem::path gp = png.string() + ".gp";
    write_text_atomically(gp, script);
    if (!gnuplot_available()) {
        std::fprintf(stderr, "note: gnuplot not found (apt-get install gnuplot-nox): %s not drawn\n",
                     png.string().c_str());
        return false;
    }
    const std::filesystem::path folder = png.has_parent_path() ? png.parent_path() : std::filesystem::path(".");
    const std::string command = "cd '" + folder.string() + "' && gnuplot '" + gp.filename().string() + "' 2> '" +
                                png.filename().string() + ".log'";
    if (std::system(command.c_str()) != 0) {
        std::fprintf(stderr, "note: gnuplot failed on %s (see %s.log)\n", gp.string().c_str(), png.string().c_str());
        return false;
    }
    std::error_code ec;
    std::filesystem::rename(folder / tmp, png, ec);
    std::filesystem::remove(png.string() + ".log", ec);
    return !ec;
}

/// The terminal line every script starts with.
inline std::string png_header(int width = 900, int height = 600) {
    return "set terminal pngcairo size " + std::to_string(width) + "," + std::to_string(height) +
           " font 'sans,11' noenhanced\nset output '@OUT@'\nset grid\nset key outside right\n";
}

}  // namespace loranull::io
