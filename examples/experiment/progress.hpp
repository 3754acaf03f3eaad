#pragma once
// A progress bar on stderr with an ETA, and files written atomically.
//
// On a terminal the bar redraws in place; in a log (CI, a pipe) it prints one
// line per tenth of the work so that logs stay short.

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <loranull/core/error.hpp>

namespace experiment {

class Progress {
public:
    Progress(std::string label, long total, bool quiet = false)
        : label_(std::move(label)), total_(total > 0 ? total : 1), quiet_(quiet), tty_(isatty(2) != 0),
          start_(std::chrono::steady_clock::now()) {}

    /// Marks `done` units finished; `note` is shown after the bar (e.g. the loss).
    void update(long done, const std::string& note = {}) {
        if (quiet_) return;
        const int tenth = static_cast<int>(10 * done / total_);
        if (!tty_ && tenth == last_tenth_ && done != total_) return;
        if (!tty_ && done == total_ && last_tenth_ == 10) return;
        last_tenth_ = tenth;
        const double elapsed = seconds();
        const double eta = done > 0 ? elapsed * double(total_ - done) / double(done) : 0.0;
        constexpr int width = 28;
        const int filled = static_cast<int>(width * done / total_);
        std::string bar(static_cast<std::size_t>(filled), '#');
        bar.resize(width, '.');
        std::fprintf(stderr, "%s%-22s [%s] %3ld%% %ld/%ld  %5.0fs  eta %4.0fs  %s%s", tty_ ? "\r" : "", label_.c_str(),
                     bar.c_str(), 100 * done / total_, done, total_, elapsed, eta, note.c_str(),
                     tty_ ? "\033[K" : "\n");
        if (tty_ && done == total_) std::fputc('\n', stderr);
        std::fflush(stderr);
    }

    double seconds() const {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    }

private:
    std::string label_;
    long total_;
    bool quiet_, tty_;
    int last_tenth_ = -1;
    std::chrono::steady_clock::time_point start_;
};

/// Writes `content` to path.tmp and renames it to path: a reader never sees a
/// half-written file, and an interrupted run leaves the old one in place.
inline void write_file_atomically(const std::filesystem::path& path, const std::string& content) {
    const std::filesystem::path tmp = path.string() + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        loranull::require(bool(out), "write_file", "cannot create ", tmp.string());
        out << content;
        out.flush();
        loranull::require(bool(out), "write_file", "writing ", tmp.string(), " failed");
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    loranull::require(!ec, "write_file", "cannot rename ", tmp.string(), " to ", path.string(), ": ", ec.message());
}

inline std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    loranull::require(bool(in), "read_file", "cannot open ", path.string());
    std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return s;
}

}  // namespace experiment
