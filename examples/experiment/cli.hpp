#pragma once
// Command-line options of the experiment's programs: parsed by the tools' one
// parser (tools/tool_options.hpp: every name declared, "--name value" or
// "--name=value", anything else refused with one clear message), read here
// with the ranges each option allows.

#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <loranull/core/error.hpp>

#include "../../tools/tool_options.hpp"

namespace experiment {

class Args {
public:
    /// `valued`: options that take a value; `flags`: options that do not;
    /// -h/--help print `help` and exit 0.
    Args(int argc, char** argv, const std::set<std::string>& valued, const std::set<std::string>& flags,
         const std::string& help)
        : line_(help) {
        for (const std::string& name : valued) line_.value(name);
        for (const std::string& name : flags) line_.flag(name);
        line_.parse(argc, argv);
    }

    bool flag(const std::string& name) const { return line_.has(name); }
    bool has(const std::string& name) const { return line_.has(name); }
    std::string get(const std::string& name, const std::string& fallback) const { return line_.get(name, fallback); }

    long integer(const std::string& name, long fallback, long lo, long hi) const {
        if (!has(name)) return fallback;
        const std::string s = get(name, "");
        long v = 0;
        try {
            v = loranull::tools::parse_integer<long>(name, s);
        } catch (const loranull::tools::UsageError&) {
            v = lo - 1;  // reported below, with the range
        }
        loranull::require(v >= lo && v <= hi && lo <= hi, "options", name, " ", s, ": need an integer in ", lo, " .. ", hi);
        return v;
    }

    double real(const std::string& name, double fallback, double lo, double hi) const {
        return has(name) ? parse_real(name, get(name, ""), lo, hi) : fallback;
    }

    /// A comma-separated list ("1e-3,3e-3").
    std::vector<std::string> list(const std::string& name, const std::string& fallback) const {
        std::vector<std::string> out;
        std::stringstream ss(get(name, fallback));
        for (std::string item; std::getline(ss, item, ',');)
            if (!item.empty()) out.push_back(item);
        loranull::require(!out.empty(), "options", name, " is empty");
        return out;
    }

    static double parse_real(const std::string& name, const std::string& s, double lo, double hi) {
        double v = lo - 1;
        try {
            v = loranull::tools::parse_number(name, s);
        } catch (const loranull::tools::UsageError&) {
        }
        loranull::require(v >= lo && v <= hi, "options", name, " ", s, ": need a number in ", lo, " .. ", hi);
        return v;
    }

private:
    loranull::tools::CommandLine line_;
};

}  // namespace experiment
