#pragma once
// The learning rates each method runs at. A method's knowledge-task trade is
// traced along its rate: too low and it keeps everything but learns nothing,
// too high and it forgets everything (or collapses). Where that transition
// lies differs by method (PiSSA's adapter holds W's principal directions and
// loses the facts at rates 2.5-8x lower than LoRA; LoRA-Null v2 trains half the factors in
// directions the knowledge does not use and needs ~10x higher) and by rank.
//
// Rates sit on a lattice of quarter-decades, 1, 1.778, 3.162, 5.623 x 10^k,
// indexed by q (rate = 10^(q/4), rounded to four digits so that a rate reads
// the same on the command line, in the CSVs and here). Each method has a
// centre: the lattice point in the middle of its transition at rank 8
// (chosen from an earlier three-rate grid at rank 8 and trial runs at rank
// 32). Higher ranks move the transition lower, about 0.8 decade per decade
// of rank: the centre moves by round(3.2 log10(r / 8)) quarter-decades. The
// sweep runs five points, the centre +- half a decade.
//
// The default run (no --sweep) runs one rate per method: the lattice point
// nearest the rate at which the full grid found that method at 50% exact
// match (docs/results.md), so that a single run per method already compares
// knowledge kept at about the same task score. At ranks the grid did not run
// it is the centre.

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <loranull/core/types.hpp>

#include "methods.hpp"

namespace experiment {

/// 10^(q/4) to four significant digits (q = -12: 1e-3; q = -11: 1.778e-3).
inline double lattice_rate(int q) {
    static constexpr const char* mantissa[] = {"1", "1.778", "3.162", "5.623"};
    const int decade = q >= 0 ? q / 4 : -((-q + 3) / 4);  // floor(q / 4)
    char text[32];
    std::snprintf(text, sizeof text, "%se%d", mantissa[q - 4 * decade], decade);
    return std::strtod(text, nullptr);
}

/// The lattice index of a method's transition at rank 8.
inline int centre_at_rank8(Method m) {
    switch (m) {
        case Method::full: return -13;          // 5.623e-4
        case Method::pissa: return -12;         // 1e-3
        case Method::lora_null_v2: return -6;   // 3.162e-2
        default: return -10;                    // 3.162e-3: lora, milora, corda, lora-null-v1
    }
}

/// The centre at `rank` (full fine-tuning has no rank: its centre is fixed).
inline int centre(Method m, Index rank) {
    if (m == Method::full) return centre_at_rank8(m);
    return centre_at_rank8(m) - static_cast<int>(std::lround(3.2 * std::log10(double(rank) / 8.0)));
}

/// Where the full grid (docs/results.md) read each method at 50% exact match,
/// to the nearest lattice point; full fine-tuning has rank 0.
struct HalfTaskPoint {
    Method method;
    Index rank;
    int q;
};
inline constexpr HalfTaskPoint half_task_points[] = {
    {Method::full, 0, -12},           // 1e-3
    {Method::lora, 8, -9},            // 5.623e-3
    {Method::pissa, 8, -10},          // 3.162e-3
    {Method::milora, 8, -9},          // 5.623e-3
    {Method::corda, 8, -10},          // 3.162e-3
    {Method::lora_null_v1, 8, -9},    // 5.623e-3
    {Method::lora_null_v2, 8, -5},    // 5.623e-2
    {Method::lora, 32, -11},          // 1.778e-3
    {Method::pissa, 32, -12},         // 1e-3
    {Method::milora, 32, -11},        // 1.778e-3
    {Method::corda, 32, -12},         // 1e-3
    {Method::lora_null_v1, 32, -10},  // 3.162e-3
    {Method::lora_null_v2, 32, -8},   // 1e-2
};

/// The default run's lattice point of a method at a rank.
inline int default_point(Method m, Index rank) {
    const Index r = m == Method::full ? 0 : rank;
    for (const HalfTaskPoint& p : half_task_points)
        if (p.method == m && p.rank == r) return p.q;
    return centre(m, rank);
}

/// The rates of a method at a rank: with `sweep` the five lattice points
/// from half a decade below its centre to half a decade above, else its
/// default point alone.
inline std::vector<double> frontier_rates(Method m, Index rank, bool sweep) {
    if (!sweep) return {lattice_rate(default_point(m, rank))};
    std::vector<double> out;
    for (int q = centre(m, rank) - 2; q <= centre(m, rank) + 2; ++q) out.push_back(lattice_rate(q));
    return out;
}

}  // namespace experiment
