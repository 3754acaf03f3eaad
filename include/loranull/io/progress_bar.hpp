#pragma once
// The one progress bar of loranull's programs: stderr, with elapsed time and
// an ETA.
//
// On a terminal the bar redraws in place (status() may change its note between
// steps); in a log (CI, a pipe, a test) it prints one line whenever another
// tenth of the work is done, and at the end, so logs stay short. The ETA is
// measured on the steps of this run only (a resumed run starts with `done` > 0).

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>

namespace loranull::io {

/// "45s", "3m07s", "2h05m".
inline std::string duration_text(double seconds) {
    char buffer[32];
    const long s = std::lround(std::max(0.0, seconds));
    if (s >= 3600) std::snprintf(buffer, sizeof buffer, "%ldh%02ldm", s / 3600, (s / 60) % 60);
    else if (s >= 60) std::snprintf(buffer, sizeof buffer, "%ldm%02lds", s / 60, s % 60);
    else std::snprintf(buffer, sizeof buffer, "%lds", s);
    return buffer;
}

class ProgressBar {
public:
    using Clock = std::chrono::steady_clock;

    /// `total` units of `unit` ("blocks", "steps"), `done` of them finished
    /// before this run; `quiet` prints nothing at all.
    ProgressBar(std::string label, long total, long done = 0, std::string unit = {}, bool quiet = false)
        : label_(std::move(label)), unit_(std::move(unit)), total_(std::max(total, 1L)), done_(done), start_done_(done),
          quiet_(quiet), tty_(::isatty(2) != 0) {}

    ProgressBar(const ProgressBar&) = delete;
    ProgressBar& operator=(const ProgressBar&) = delete;
    ~ProgressBar() { finish(); }

    /// `done` units are finished; `note` follows the bar (a loss, a block).
    void set(long done, const std::string& note = {}) {
        done_ = std::clamp(done, 0L, total_);
        const int tenth = static_cast<int>(10 * done_ / total_);
        const bool log_line = tenth != last_tenth_ || (done_ == total_ && !ended_);
        if (tty_ || log_line) draw(note);
        last_tenth_ = tenth;
        ended_ = ended_ || done_ == total_;
    }

    /// One more unit finished.
    void advance(const std::string& note = {}) { set(done_ + 1, note); }

    /// What is being worked on now: shown on a terminal, not logged.
    void status(const std::string& note) {
        if (tty_) draw(note);
    }

    /// Ends the bar's line, so that other output starts on a fresh one.
    void finish() {
        if (tty_ && drawn_ && !quiet_) std::fputc('\n', stderr);
        drawn_ = false;
    }

    double seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }
    bool tty() const { return tty_; }

private:
    void draw(const std::string& note) {
        if (quiet_) return;
        const double elapsed = seconds();
        const long this_run = done_ - start_done_;
        const std::string eta = this_run > 0 ? duration_text(elapsed / double(this_run) * double(total_ - done_)) : "?";
        constexpr int width = 28;
        const int filled = static_cast<int>(width * done_ / total_);
        std::string bar(static_cast<std::size_t>(filled), '#');
        bar.resize(width, '.');
        std::fprintf(stderr, "%s%s [%s] %ld/%ld%s%s  elapsed %s  eta %s  %s%s", tty_ ? "\r" : "", label_.c_str(),
                     bar.c_str(), done_, total_, unit_.empty() ? "" : " ", unit_.c_str(),
                     duration_text(elapsed).c_str(), eta.c_str(), note.c_str(), tty_ ? "\033[K" : "\n");
        std::fflush(stderr);
        drawn_ = tty_;
    }

    std::string label_, unit_;
    long total_, done_, start_done_;
    bool quiet_, tty_, drawn_ = false, ended_ = false;
    int last_tenth_ = -1;
    Clock::time_point start_ = Clock::now();
};

}  // namespace loranull::io
