#pragma once
// Command-line options: --name value pairs and --flags, every name declared,
// anything else refused with one clear message.

#include <cstdlib>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <loranull/core/error.hpp>

namespace experiment {

class Args {
public:
    /// `valued`: options that take a value; `flags`: options that do not.
    Args(int argc, char** argv, std::set<std::string> valued, std::set<std::string> flags)
        : valued_(std::move(valued)), flags_(std::move(flags)) {
        for (int i = 1; i < argc; ++i) {
            const std::string a = argv[i];
            if (flags_.count(a)) {
                present_.insert(a);
            } else if (valued_.count(a)) {
                loranull::require(i + 1 < argc, "options", a, " needs a value");
                values_[a] = argv[++i];
            } else {
                loranull::fail("options", "unknown option '", a, "' (--help lists the options)");
            }
        }
    }

    bool flag(const std::string& name) const { return present_.count(name) > 0; }
    bool has(const std::string& name) const { return values_.count(name) > 0; }

    std::string get(const std::string& name, const std::string& fallback) const {
        const auto it = values_.find(name);
        return it == values_.end() ? fallback : it->second;
    }

    long integer(const std::string& name, long fallback, long lo, long hi) const {
        if (!has(name)) return fallback;
        const std::string& s = values_.at(name);
        char* end = nullptr;
        const long v = std::strtol(s.c_str(), &end, 10);
        loranull::require(end && *end == '\0' && !s.empty() && v >= lo && v <= hi, "options", name, " ", s,
                          ": need an integer in ", lo, " .. ", hi);
        return v;
    }

    double real(const std::string& name, double fallback, double lo, double hi) const {
        return has(name) ? parse_real(name, values_.at(name), lo, hi) : fallback;
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
        char* end = nullptr;
        const double v = std::strtod(s.c_str(), &end);
        loranull::require(end && *end == '\0' && !s.empty() && v >= lo && v <= hi, "options", name, " ", s,
                          ": need a number in ", lo, " .. ", hi);
        return v;
    }

private:
    std::set<std::string> valued_, flags_, present_;
    std::map<std::string, std::string> values_;
};

}  // namespace experiment
