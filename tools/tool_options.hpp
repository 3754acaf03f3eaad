#pragma once
// What every loranull command-line tool shares: one way to parse options
// (CLI11, with the tools' own one-line messages), the two kinds of error and
// their exit status, strict numbers, and the main that maps errors to exits.
//
//   exit 0   success (and --help)
//   exit 2   the command line: an unknown option, a missing or empty value,
//            an option given twice, a malformed number, a refused request
//   exit 1   the files, the data or the computation
//
// Every error is one line on stderr: "<tool>: error: <message>".

#include <algorithm>
#include <charconv>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <malloc.h>
#include <map>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <CLI/CLI.hpp>

#include <loranull/core/error.hpp>
#include <loranull/pipeline/build_options.hpp>

namespace loranull::tools {

/// glibc serves every allocation above 32 MiB with a fresh mmap and returns it
/// on free, so each of a forward pass's large temporaries (a 2816 x 4096 float
/// product is 46 MiB) is page-faulted and zeroed by the kernel again: 20-40%
/// of a block's forward on the benchmark checkpoint (docs/benchmarks.md). Keep
/// freed memory in the heap for reuse instead. The peak (VmHWM) is unchanged:
/// only what was already resident stays so.
inline void reuse_freed_memory() {
    mallopt(M_MMAP_THRESHOLD, 1 << 30);  // below 1 GiB: from the heap, reused after free
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

/// A mistake on the command line (exit status 2).
struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// A bad input file or a failed computation (exit status 1), with a message
/// addressed to the user (no "loranull::<function>:" prefix).
template <class... Parts>
[[noreturn]] void tool_fail(Parts&&... parts) {
    throw std::runtime_error(loranull::detail::concat(std::forward<Parts>(parts)...));
}

/// The whole string as an integer of type Int, or a usage error.
template <class Int>
Int parse_integer(const std::string& option, const std::string& text) {
    Int value{};
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || text.empty())
        throw UsageError(option + " expects an integer, got '" + text + "'");
    return value;
}

inline double parse_number(const std::string& option, const std::string& text) {
    double value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || text.empty())
        throw UsageError(option + " expects a number, got '" + text + "'");
    return value;
}

/// The options of one tool: every name declared, each value option taking one
/// value as "--name value" or "--name=value", flags taking none, -h/--help
/// printing the tool's own help text. Parsing is CLI11's; the checks CLI11
/// leaves to the caller (an option given twice, an empty value, a stray
/// argument) and the wording of every error are the tools' own, so all tools
/// say the same thing about the same mistake.
class CommandLine {
public:
    explicit CommandLine(std::string help_text) : help_(std::move(help_text)) {
        app_.set_help_flag();  // -h/--help are ours: they print help_
        app_.allow_extras();   // unknown arguments are reported below, in our words
    }

    CommandLine& value(const std::string& name) {
        app_.add_option(name, values_[name])->expected(1)->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
            ->allow_extra_args(false);  // "--rank 3 extra": extra is a stray argument, not a second value
        return *this;
    }
    CommandLine& flag(const std::string& name) {
        app_.add_flag(name, counts_[name]);
        return *this;
    }

    /// Parses argv; prints the help text and exits 0 when asked for it.
    void parse(int argc, char** argv) {
        for (int i = 1; i < argc; ++i)
            if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
                std::fputs(help_.c_str(), stdout);
                std::exit(0);
            }
        // A flag given a value ("--keep-blocks=0"): CLI11 would read it as a
        // count through std::stoll, which throws on "-444..." (found by fuzzing).
        for (int i = 1; i < argc; ++i) {
            const std::string arg(argv[i]);
            const std::size_t eq = arg.find('=');
            if (eq != std::string::npos && counts_.count(arg.substr(0, eq)))
                throw UsageError(arg.substr(0, eq) + " takes no value, got '" + arg + "'");
        }
        try {
            app_.parse(argc, argv);
        } catch (const CLI::ParseError& e) {
            // The one error CLI11 reports itself: an option without its value.
            const std::string name = e.get_name() == "ArgumentMismatch" ? option_in(e.what()) : std::string();
            if (name.empty()) throw UsageError(e.what());
            for (int i = 1; i < argc; ++i)
                if (std::string(argv[i]) == name + "=") throw UsageError(name + " has an empty value");
            throw UsageError(name + " needs a value");
        } catch (const std::exception& e) {  // any other escape of CLI11's is still the command line's fault
            throw UsageError(std::string("cannot parse the command line (") + e.what() + ")");
        }
        for (const std::string& extra : app_.remaining())
            throw UsageError(extra.rfind("-", 0) == 0 ? "unknown option '" + extra.substr(0, extra.find('=')) + "'"
                                                      : "unexpected argument '" + extra + "'");
        for (const auto& [name, values] : values_) {
            if (values.size() > 1) throw UsageError(name + " given twice");
            if (app_.get_option(name)->count() > 0 && (values.empty() || values.front().empty()))
                throw UsageError(name + " has an empty value");
        }
        for (const auto& [name, count] : counts_)
            if (count > 1) throw UsageError(name + " given twice");
    }

    bool has(const std::string& name) const {
        if (const auto v = values_.find(name); v != values_.end()) return !v->second.empty();
        const auto c = counts_.find(name);
        return c != counts_.end() && c->second > 0;
    }
    std::string get(const std::string& name, const std::string& fallback = {}) const {
        const auto& v = values_.at(name);
        return v.empty() ? fallback : v.front();
    }
    std::string required(const std::string& name) const {
        if (!has(name)) throw UsageError("missing " + name + " (see --help)");
        return get(name);
    }
    template <class Int>
    Int integer(const std::string& name, Int fallback) const {
        return has(name) ? parse_integer<Int>(name, get(name)) : fallback;
    }
    /// An integer that must be at least 1 when given ("NAME must be at least 1, got X").
    template <class Int>
    Int positive(const std::string& name, Int fallback) const {
        const Int value = integer<Int>(name, fallback);
        if (has(name) && value < 1) throw UsageError(name + " must be at least 1, got " + get(name));
        return value;
    }
    /// A finite number > 0 when given ("NAME must be a positive number, got 'X'").
    double positive_number(const std::string& name, double fallback) const {
        const double value = number(name, fallback);
        if (has(name) && (!std::isfinite(value) || value <= 0))
            throw UsageError(name + " must be a positive number, got '" + get(name) + "'");
        return value;
    }
    double number(const std::string& name, double fallback) const {
        return has(name) ? parse_number(name, get(name)) : fallback;
    }

private:
    /// "--rank" from CLI11's "--rank: 1 required TEXT missing".
    static std::string option_in(const std::string& message) {
        const auto colon = message.find(':');
        return colon == std::string::npos || message.rfind("--", 0) != 0 ? std::string() : message.substr(0, colon);
    }

    std::string help_;
    CLI::App app_;
    std::map<std::string, std::vector<std::string>> values_;
    std::map<std::string, std::int64_t> counts_;
};

/// A tool's main: runs `body`, maps every error to one line on stderr and the
/// exit status above. `before_error` runs first (e.g. to end a progress bar's line).
/// A file-size limit (ulimit -f) then fails a write as a full disk does, by
/// name, instead of killing the tool with SIGXFSZ.
inline int run_tool(const char* tool, const std::function<int()>& body, const std::function<void()>& before_error = {}) {
    std::signal(SIGXFSZ, SIG_IGN);
    reuse_freed_memory();
    auto report = [&](const std::string& message) {
        if (before_error) before_error();
        std::string line = message;
        std::replace(line.begin(), line.end(), '\n', ' ');
        // Library errors start with "loranull::<where>:"; where a tool passed an
        // option ("--model DIR") as the place, the prefix says nothing.
        if (line.rfind("loranull::--", 0) == 0) line.erase(0, std::string("loranull::").size());
        std::fprintf(stderr, "%s: error: %s\n", tool, line.c_str());
    };
    try {
        return body();
    } catch (const UsageError& e) {
        report(e.what());
        return 2;
    } catch (const pipeline::BuildError& e) {
        report(e.what());
        return e.kind() == pipeline::BuildError::Kind::request ? 2 : 1;
    } catch (const std::exception& e) {
        report(e.what());
        return 1;
    }
}

}  // namespace loranull::tools
