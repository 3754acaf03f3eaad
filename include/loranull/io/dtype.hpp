#pragma once
// Element types of tensor files and the conversions between them and float.
//
// F16 (IEEE binary16) and BF16 (the top half of a binary32) are converted to
// float on load and from float with round-to-nearest-even on save; F32/F64
// values are copied exactly.

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "loranull/core/error.hpp"

namespace loranull::io {

enum class Dtype { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

/// Safetensors' spelling: "F32", "BF16", ...
inline std::string_view dtype_name(Dtype d) {
    switch (d) {
        case Dtype::F64: return "F64";
        case Dtype::F32: return "F32";
        case Dtype::F16: return "F16";
        case Dtype::BF16: return "BF16";
        case Dtype::I64: return "I64";
        case Dtype::I32: return "I32";
        case Dtype::I16: return "I16";
        case Dtype::I8: return "I8";
        case Dtype::U8: return "U8";
        case Dtype::BOOL: return "BOOL";
    }
    return "?";
}

/// config.json's torch_dtype for a floating dtype: "float32", "bfloat16", ...
inline std::string torch_dtype_name(Dtype d) {
    switch (d) {
        case Dtype::F64: return "float64";
        case Dtype::F32: return "float32";
        case Dtype::F16: return "float16";
        case Dtype::BF16: return "bfloat16";
        default: fail("io::torch_dtype_name", "dtype ", dtype_name(d), " is not a floating-point type");
    }
}

/// Throws on a name this library does not know.
inline Dtype parse_dtype(std::string_view name) {
    for (Dtype d : {Dtype::F64, Dtype::F32, Dtype::F16, Dtype::BF16, Dtype::I64, Dtype::I32, Dtype::I16, Dtype::I8,
                    Dtype::U8, Dtype::BOOL})
        if (dtype_name(d) == name) return d;
    fail("io::parse_dtype", "unsupported dtype '", name, "'");
}

inline std::size_t dtype_size(Dtype d) {
    switch (d) {
        case Dtype::F64: case Dtype::I64: return 8;
        case Dtype::F32: case Dtype::I32: return 4;
        case Dtype::F16: case Dtype::BF16: case Dtype::I16: return 2;
        case Dtype::I8: case Dtype::U8: case Dtype::BOOL: return 1;
    }
    return 0;
}

inline bool is_floating(Dtype d) { return d == Dtype::F64 || d == Dtype::F32 || d == Dtype::F16 || d == Dtype::BF16; }

/// d as a float rounded toward zero, its last bit set when inexact ("round to
/// odd"): rounding that float to nearest-even in a format of at most 22
/// significant bits (BF16, F16) then rounds d itself correctly, once. A plain
/// double -> float -> BF16 rounds twice and misses ties by one ulp.
inline float double_to_float_round_to_odd(double d) {
    const float f = static_cast<float>(d);
    if (std::isnan(d) || static_cast<double>(f) == d) return f;
    std::uint32_t bits = std::bit_cast<std::uint32_t>(f);
    if (std::fabs(static_cast<double>(f)) > std::fabs(d)) bits -= 1;  // rounded away from zero: one step back
    return std::bit_cast<float>(bits | 1u);
}

inline float bf16_to_float(std::uint16_t bits) { return std::bit_cast<float>(std::uint32_t(bits) << 16); }

inline std::uint16_t float_to_bf16(float value) {
    std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
    if (std::isnan(value)) return static_cast<std::uint16_t>((bits >> 16) | 0x0040);  // keep it a NaN
    bits += 0x7FFF + ((bits >> 16) & 1);  // round to nearest, ties to even
    return static_cast<std::uint16_t>(bits >> 16);
}

inline float f16_to_float(std::uint16_t h) {
    const std::uint32_t sign = std::uint32_t(h & 0x8000) << 16;
    const std::uint32_t exponent = (h >> 10) & 0x1F;
    const std::uint32_t mantissa = h & 0x3FF;
    if (exponent == 0x1F) return std::bit_cast<float>(sign | 0x7F800000u | (mantissa << 13));  // Inf, NaN
    if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24
        const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
        return sign ? -magnitude : magnitude;
    }
    return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

inline std::uint16_t float_to_f16(float value) {
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
    const std::uint16_t sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000);
    const float magnitude = std::fabs(value);
    if (std::isnan(value)) return sign | 0x7E00;
    if (magnitude >= 65520.0f) return sign | 0x7C00;  // rounds to Inf
    if (magnitude < 0x1.0p-14f) {
        // Subnormal range: value / 2^-24 rounded to an integer (nearbyint rounds
        // half to even in the default rounding mode).
        return sign | static_cast<std::uint16_t>(std::nearbyint(magnitude * 0x1.0p24f));
    }
    std::uint32_t m = bits & 0x7FFFFFFF;
    m += 0x0FFF + ((m >> 13) & 1);  // round the 23-bit mantissa to 10 bits, ties to even
    return sign | static_cast<std::uint16_t>((m >> 13) - (112u << 10));
}

}  // namespace loranull::io
