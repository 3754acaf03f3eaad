#pragma once
// Seeded, portable random numbers.
//
// std::normal_distribution is implementation-defined (libstdc++ and libc++ give
// different numbers for the same seed), so the library carries its own:
// xoshiro256** (Blackman and Vigna) seeded through splitmix64, uniforms from the
// top 53 bits, normals by Box-Muller. One seed gives the same bits on every
// platform and, since random matrices are made on the host and uploaded, on
// every backend.

#include <cmath>
#include <cstdint>
#include <numbers>

#include "loranull/core/host_matrix.hpp"

namespace loranull {

class Rng {
public:
    explicit Rng(std::uint64_t seed) {
        // splitmix64 spreads any seed (0 included) over the 256-bit state.
        for (auto& word : state_) {
            seed += 0x9E3779B97F4A7C15ull;
            std::uint64_t z = seed;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
            word = z ^ (z >> 31);
        }
    }

    /// Next raw 64-bit output of xoshiro256**.
    std::uint64_t next_u64() {
        const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
        const std::uint64_t t = state_[1] << 17;
        state_[2] ^= state_[0];
        state_[3] ^= state_[1];
        state_[1] ^= state_[2];
        state_[0] ^= state_[3];
        state_[2] ^= t;
        state_[3] = rotl(state_[3], 45);
        return result;
    }

    /// Uniform on [0, 1) with 53 random bits.
    double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

    /// Uniform on [lo, hi).
    double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }

    /// Standard normal, Box-Muller; the second value of each pair is kept.
    double normal() {
        if (has_spare_) {
            has_spare_ = false;
            return spare_;
        }
        const double u1 = 1.0 - uniform();  // (0, 1]: log is finite
        const double u2 = uniform();
        const double radius = std::sqrt(-2.0 * std::log(u1));
        const double angle = 2.0 * std::numbers::pi * u2;
        spare_ = radius * std::sin(angle);
        has_spare_ = true;
        return radius * std::cos(angle);
    }

private:
    static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

    std::uint64_t state_[4];
    double spare_ = 0.0;
    bool has_spare_ = false;
};

/// rows x cols matrix of independent N(0, stddev^2) entries, filled column by column.
template <Real T>
HostMatrix<T> random_normal(Index rows, Index cols, Rng& rng, double stddev = 1.0) {
    HostMatrix<T> m(rows, cols);
    for (Index k = 0; k < m.size(); ++k) m.data()[k] = static_cast<T>(stddev * rng.normal());
    return m;
}

/// rows x cols matrix of independent U[lo, hi) entries, filled column by column.
template <Real T>
HostMatrix<T> random_uniform(Index rows, Index cols, Rng& rng, double lo, double hi) {
    HostMatrix<T> m(rows, cols);
    for (Index k = 0; k < m.size(); ++k) m.data()[k] = static_cast<T>(rng.uniform(lo, hi));
    return m;
}

}  // namespace loranull
