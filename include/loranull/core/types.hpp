#pragma once
// Index type, transposition flags and the scalar traits the library uses.

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace loranull {

/// Signed index for sizes and positions (Eigen's convention, LAPACK's ints are
/// checked at the boundary).
using Index = std::ptrdiff_t;

/// Whether a matrix operand enters a product as itself or transposed.
enum class Op { none, transpose };

/// The scalar types every algorithm is instantiated for.
template <class T>
concept Real = std::is_same_v<T, float> || std::is_same_v<T, double>;

/// Short name used in files and messages: "f32" or "f64".
template <Real T>
constexpr std::string_view scalar_name() {
    if constexpr (std::is_same_v<T, float>) return "f32";
    else return "f64";
}

/// "A x B" for messages.
inline std::string shape_string(Index rows, Index cols) {
    return std::to_string(rows) + " x " + std::to_string(cols);
}

/// The shortest text that reads back as the same double ("0.25", "1e-05"):
/// numbers in file metadata and messages.
inline std::string number_text(double value) {
    char buffer[64];
    const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value);
    return ec == std::errc() ? std::string(buffer, end) : std::to_string(value);
}

}  // namespace loranull
