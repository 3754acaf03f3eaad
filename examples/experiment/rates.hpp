#pragma once
// The learning rates each method runs at. A method's knowledge-task trade is
// traced along its rate: too low and it keeps everything but learns nothing,
// too high and it forgets everything (or collapses). Where that transition
// lies differs by method (PiSSA's adapter holds W's principal directions and
// needs rates ~3x lower than LoRA's; LoRA-Null v2 trains half the factors in
// directions the knowledge does not use and needs ~10x higher) and by rank.
//
// Rates sit on a lattice of quarter-decades, 1, 1.778, 3.162, 5.623 x 10^k,
// indexed by q (rate = 10^(q/4), rounded to four digits so that a rate reads
// the same on the command line, in the CSVs and here). Each method has a
// centre: the lattice point in the middle of its transition at rank 8 (from
// the rank-8 grid of docs/results.md). Higher ranks move the transition
// lower, about 0.8 decade per decade of rank (rank 8 against 32 in the same
// grid): the centre moves by round(3.2 log10(r / 8)) quarter-decades. The
// sweep runs five points, the centre +- half a decade; the default run runs
// the centre alone, where every method is part-way through its trade, so a
// single run already compares them near equal task scores.

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

/// The rates of a method at a rank: the centre, or with `sweep` the five
/// lattice points from half a decade below it to half a decade above.
inline std::vector<double> frontier_rates(Method m, Index rank, bool sweep) {
    const int c = centre(m, rank);
    std::vector<double> out;
    for (int q = sweep ? c - 2 : c; q <= (sweep ? c + 2 : c); ++q) out.push_back(lattice_rate(q));
    return out;
}

}  // namespace experiment
