#pragma once
// What the command-line tools share (loranull-init, loranull-build): the two
// kinds of error (a usage mistake exits 2, a bad file or computation 1), the
// table of initialisation methods, and strict number parsing.

#include <charconv>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace loranull::tools {

/// A mistake on the command line (exit status 2).
struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// A bad input file or a failed computation (exit status 1), like the
/// library's loranull::error.
template <class... Parts>
[[noreturn]] void tool_fail(Parts&&... parts) {
    std::ostringstream message;
    (message << ... << std::forward<Parts>(parts));
    throw std::runtime_error(message.str());
}

enum class Method { lora, pissa, pissa_fast, milora, corda_kpm, corda_ipm, lora_null };

struct MethodInfo {
    std::string_view name;
    Method method;
    bool needs_data;  // calibration activations or a covariance
};

inline constexpr MethodInfo methods[] = {
    {"lora", Method::lora, false},             {"pissa", Method::pissa, false},
    {"pissa-fast", Method::pissa_fast, false}, {"milora", Method::milora, false},
    {"corda-kpm", Method::corda_kpm, true},    {"corda-ipm", Method::corda_ipm, true},
    {"lora-null", Method::lora_null, true},
};

inline std::string method_list() {
    std::string out;
    for (const auto& m : methods) out += (out.empty() ? "" : ", ") + std::string(m.name);
    return out;
}

inline const MethodInfo& find_method(const std::string& name) {
    for (const auto& m : methods)
        if (m.name == name) return m;
    throw UsageError("unknown method '" + name + "' (expected one of: " + method_list() + ")");
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

/// Shortest text that reads back as the same double.
inline std::string number_text(double value) {
    char buffer[64];
    const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value);
    return ec == std::errc() ? std::string(buffer, end) : std::to_string(value);
}

}  // namespace loranull::tools
