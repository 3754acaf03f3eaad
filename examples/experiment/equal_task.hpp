#pragma once
// The comparison at equal task score: how much knowledge each method keeps
// when it has learned the task to a given level. A method's runs at rising
// learning rates trace a curve of (task exact match, facts recalled, text
// bits per byte); the knowledge at a task level L is read off that curve
// where it first reaches L, linearly in the task score between the last rate
// below L and the first at or above it. Each seed's curve is read on its own
// (the seed fixes LoRA's random A and the data order), and the seeds that
// reach L give the mean and spread.
//
// Nothing is extrapolated: a curve that starts at or above L (its lowest rate
// already learns that much) or never reaches it gives no value at L, and the
// table says how many seeds did. Diverged runs have no scores and are left
// out of the curves.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "experiment.hpp"

namespace experiment {

/// Mean and sample standard deviation (0 for one value).
struct Spread {
    double mean = 0, stddev = 0;
    static Spread of(const std::vector<double>& v) {
        Spread s;
        if (v.empty()) return s;
        for (double x : v) s.mean += x;
        s.mean /= double(v.size());
        if (v.size() > 1) {
            for (double x : v) s.stddev += (x - s.mean) * (x - s.mean);
            s.stddev = std::sqrt(s.stddev / double(v.size() - 1));
        }
        return s;
    }
};

/// One run on a seed's curve.
struct CurvePoint {
    double lr = 0, task = 0, facts = 0, text_bits = 0;
};

/// Where a curve (points in rising rate) first reaches `level`: task is
/// `level` and the rest is interpolated linearly in the task score (the
/// rate in log10). nullopt when the first point is already at or above the
/// level or no point reaches it.
inline std::optional<CurvePoint> at_task_level(const std::vector<CurvePoint>& curve, double level) {
    if (curve.empty() || curve.front().task >= level) return std::nullopt;
    for (std::size_t i = 1; i < curve.size(); ++i) {
        const CurvePoint& a = curve[i - 1];
        const CurvePoint& b = curve[i];
        if (a.task < level && b.task >= level) {
            const double t = (level - a.task) / (b.task - a.task);
            auto mix = [t](double x, double y) { return x + t * (y - x); };
            return CurvePoint{std::pow(10.0, mix(std::log10(a.lr), std::log10(b.lr))), level, mix(a.facts, b.facts),
                              mix(a.text_bits, b.text_bits)};
        }
    }
    return std::nullopt;
}

/// Knowledge kept by one (method, rank) at one task level.
struct EqualTask {
    Method method = Method::full;
    Index rank = 0;            // 0: full fine-tuning
    double level = 0;          // task exact match
    std::size_t seeds = 0;     // seeds with a curve
    std::size_t reached = 0;   // seeds whose curve gives a value at the level
    std::size_t above = 0;     // seeds whose lowest rate is already at or above the level
    Spread facts, text_bits;   // over the seeds that reached it
    Spread lr;                 // the interpolated rate
};

/// Every (method, rank) of `runs` at every level, in the runs' order.
inline std::vector<EqualTask> equal_task_table(const std::vector<RunResult>& runs, const std::vector<double>& levels) {
    struct Arm {
        Method method;
        Index rank;
    };
    std::vector<Arm> arms;
    for (const RunResult& r : runs)
        if (std::none_of(arms.begin(), arms.end(), [&](const Arm& a) { return a.method == r.method && a.rank == r.rank; }))
            arms.push_back({r.method, r.rank});
    std::vector<EqualTask> out;
    for (const Arm& arm : arms) {
        std::vector<std::uint64_t> seeds;
        for (const RunResult& r : runs)
            if (r.method == arm.method && r.rank == arm.rank && std::find(seeds.begin(), seeds.end(), r.seed) == seeds.end())
                seeds.push_back(r.seed);
        std::vector<std::vector<CurvePoint>> curves;
        for (std::uint64_t seed : seeds) {
            std::vector<CurvePoint> curve;
            for (const RunResult& r : runs)
                if (r.method == arm.method && r.rank == arm.rank && r.seed == seed && !r.diverged)
                    curve.push_back({r.lr, r.after.task_accuracy, r.after.fact_accuracy, r.after.text_bits_per_byte});
            std::sort(curve.begin(), curve.end(), [](const CurvePoint& a, const CurvePoint& b) { return a.lr < b.lr; });
            curves.push_back(std::move(curve));
        }
        for (double level : levels) {
            EqualTask e;
            e.method = arm.method;
            e.rank = arm.rank;
            e.level = level;
            e.seeds = curves.size();
            std::vector<double> facts, text, lr;
            for (const auto& curve : curves) {
                if (!curve.empty() && curve.front().task >= level) ++e.above;
                if (const auto p = at_task_level(curve, level)) {
                    facts.push_back(p->facts);
                    text.push_back(p->text_bits);
                    lr.push_back(p->lr);
                }
            }
            e.reached = facts.size();
            e.facts = Spread::of(facts);
            e.text_bits = Spread::of(text);
            e.lr = Spread::of(lr);
            out.push_back(e);
        }
    }
    return out;
}

/// The paper's ordering of knowledge kept, LoRA < MiLoRA < CorDA < LoRA-Null
/// (v1 or v2), checked on facts recalled at one rank and task level: "holds",
/// "does not hold (A >= B)" for the first pair out of order, or "not
/// measured (M ...)" when a method is missing or not every seed reached the
/// level.
inline std::string paper_ordering(const std::vector<EqualTask>& table, Index rank, double level, Method lora_null) {
    const Method chain[] = {Method::lora, Method::milora, Method::corda, lora_null};
    std::vector<const EqualTask*> row;
    for (Method m : chain) {
        const auto it = std::find_if(table.begin(), table.end(), [&](const EqualTask& e) {
            return e.method == m && e.rank == rank && e.level == level;
        });
        if (it == table.end()) return std::string("not measured (") + method_name(m) + " did not run)";
        if (it->seeds == 0 || it->reached < it->seeds)
            return std::string("not measured (") + method_name(m) + " reached it on " + std::to_string(it->reached) + " of " +
                   std::to_string(it->seeds) + " seeds)";
        row.push_back(&*it);
    }
    for (std::size_t i = 1; i < row.size(); ++i)
        if (!(row[i - 1]->facts.mean < row[i]->facts.mean))
            return std::string("does not hold (") + method_name(row[i - 1]->method) + " >= " + method_name(row[i]->method) + ")";
    return "holds";
}

}  // namespace experiment
