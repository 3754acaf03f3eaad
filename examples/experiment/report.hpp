#pragma once
// The experiment's outputs: the table on the terminal, CSV and JSON files,
// the invariant checks, and the plots.
//
//   runs.csv       one row per (method, rank, lr, seed); rank 0 is full fine-tuning
//   summary.csv    one row per (method, rank, lr): mean and spread over seeds
//   equal_task.csv one row per (method, rank, task level): knowledge kept at
//                  that exact match, read off each seed's rate curve
//   layers.csv     SPEC.md section 4 per run, block and projection
//   results.json   all of the above, the settings, the checks and the verdicts
//   frontier.png   knowledge kept against task learned, every method and rate,
//                  one panel per rank (full fine-tuning in each)
//   losses.png     training-loss curves
//   spectrum.png   eigenvalue spectra of a few calibration covariances

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <loranull/io/atomic_file.hpp>
#include <loranull/io/gnuplot.hpp>

#include "equal_task.hpp"
#include "experiment.hpp"

namespace experiment {

using loranull::io::plot_png;
using loranull::io::png_header;

/// A whole file as bytes (the results.json of earlier runs, for --merge).
inline std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    loranull::require(bool(in), "read_file", "cannot open ", path.string());
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

/// The runs of one (method, rank, lr), aggregated over seeds.
struct Summary {
    Method method = Method::full;
    Index rank = 0;
    double lr = 0;
    std::size_t seeds = 0;
    std::size_t diverged = 0;  // runs whose loss stopped being finite (scored 0)
    std::int64_t trainable = 0;
    Spread fact_accuracy, text_bits, task_accuracy, task_bits, combined, seconds;
};

inline std::vector<Summary> summarise(const std::vector<RunResult>& runs) {
    std::vector<Summary> out;
    for (const RunResult& r : runs) {
        const bool seen = std::any_of(out.begin(), out.end(), [&](const Summary& s) {
            return s.method == r.method && s.rank == r.rank && s.lr == r.lr;
        });
        if (seen) continue;
        std::vector<double> fact, text, task, bits, combined, seconds;
        Summary s;
        s.method = r.method;
        s.rank = r.rank;
        s.lr = r.lr;
        for (const RunResult& q : runs)
            if (q.method == r.method && q.rank == r.rank && q.lr == r.lr) {
                fact.push_back(q.after.fact_accuracy);
                if (!q.diverged) text.push_back(q.after.text_bits_per_byte);
                task.push_back(q.after.task_accuracy);
                if (!q.diverged) bits.push_back(q.after.task_answer_bits);
                combined.push_back(q.combined_score());
                seconds.push_back(q.seconds);
                s.trainable = q.trainable;
                ++s.seeds;
                s.diverged += q.diverged ? 1 : 0;
            }
        s.fact_accuracy = Spread::of(fact);
        s.text_bits = Spread::of(text);
        s.task_accuracy = Spread::of(task);
        s.task_bits = Spread::of(bits);
        s.combined = Spread::of(combined);
        s.seconds = Spread::of(seconds);
        out.push_back(s);
    }
    return out;
}

/// The invariants that must hold at any scale; the main job fails when one
/// does not. A run whose training loss did not fall (a rate too high for its
/// method) is not a broken invariant: it is listed in `unstable` and shown,
/// not failed.
struct Checks {
    double max_init_logit_change = 0;   // adapter methods: outputs unchanged at initialisation
    double max_null_space_residual = 0; // LoRA-Null: A0's rows in span(U_null)
    double worst_v2_bound_ratio = 0;    // max over v2 layers of output_change / bound (<= 1)
    bool v2_bound_applies = true;       // A stayed A0 in every v2 layer
    bool every_loss_fell = true;        // mean of the last tenth of steps < mean of the first tenth
    std::vector<std::string> failures;
    std::vector<std::string> unstable;  // runs whose loss did not fall

    static constexpr double init_tolerance = 1e-4;       // float logits, relative to max |logit|
    static constexpr double null_space_tolerance = 1e-5; // float factors

    bool ok() const { return failures.empty(); }

    static Checks of(const std::vector<RunResult>& runs) {
        Checks c;
        for (const RunResult& r : runs) {
            char lr[32];
            std::snprintf(lr, sizeof lr, "%.4g", r.lr);
            const std::string who = std::string(method_name(r.method)) + " (rank " + std::to_string(r.rank) + ", lr " +
                                    lr + ", seed " + std::to_string(r.seed) + ")";
            if (uses_adapters(r.method)) {
                c.max_init_logit_change = std::max(c.max_init_logit_change, r.init_logit_change);
                if (!(r.init_logit_change <= init_tolerance))
                    c.failures.push_back(who + ": logits moved by " + std::to_string(r.init_logit_change) +
                                         " (relative) when the adapters were attached");
            }
            if (needs_null_space(r.method)) {
                c.max_null_space_residual = std::max(c.max_null_space_residual, r.null_space_residual);
                if (!(r.null_space_residual <= null_space_tolerance))
                    c.failures.push_back(who + ": A0 leaves the null space by " + std::to_string(r.null_space_residual));
            }
            if (r.method == Method::lora_null_v2)
                for (const LayerBound& l : r.layers) {
                    c.v2_bound_applies = c.v2_bound_applies && l.bound_applies;
                    // Double-precision evaluation: allow rounding only.
                    const double ratio = l.bound > 0 ? l.output_change / l.bound : (l.output_change > 0 ? INFINITY : 0);
                    c.worst_v2_bound_ratio = std::max(c.worst_v2_bound_ratio, ratio);
                    if (!l.bound_applies || l.output_change > l.bound * (1 + 1e-9) + 1e-12)
                        c.failures.push_back(who + ": block " + std::to_string(l.layer) + " " + l.projection +
                                             " output change " + std::to_string(l.output_change) + " > bound " +
                                             std::to_string(l.bound));
                }
            const std::size_t n = r.losses.size(), tenth = std::max<std::size_t>(1, n / 10);
            if (r.diverged) continue;  // reported as diverged, not as a failure of the library
            if (n >= 2) {
                double first = 0, last = 0;
                for (std::size_t i = 0; i < tenth; ++i) first += r.losses[i], last += r.losses[n - 1 - i];
                if (!(last < first)) {
                    c.every_loss_fell = false;
                    c.unstable.push_back(who + ": training loss did not fall (" + std::to_string(first / double(tenth)) +
                                         " -> " + std::to_string(last / double(tenth)) + " bits/byte)");
                }
            }
        }
        return c;
    }
};

inline std::string percent(double x) {
    char b[32];
    std::snprintf(b, sizeof b, "%.1f", 100 * x);
    return b;
}

/// A rank in tables: "-" for full fine-tuning's 0.
inline std::string rank_label(Index rank) { return rank ? std::to_string(rank) : "-"; }

/// The table on the terminal.
inline void print_table(const Scores& before, const std::vector<Summary>& rows) {
    std::printf("\npre-trained: held-out text %.3f bits/byte, facts %.1f%%, addition %.1f%%\n\n",
                before.text_bits_per_byte, 100 * before.fact_accuracy, 100 * before.task_accuracy);
    std::printf("%-13s %4s %9s %10s %15s %14s %15s %11s %15s %7s\n", "method", "rank", "lr", "trainable", "facts kept %",
                "text bits/B", "addition EM %", "answer bits", "combined", "time s");
    for (const Summary& s : rows) {
        char facts[32], text[32], task[32], combined[32];
        std::snprintf(facts, sizeof facts, "%.1f +- %.1f", 100 * s.fact_accuracy.mean, 100 * s.fact_accuracy.stddev);
        std::snprintf(text, sizeof text, "%.3f +- %.3f", s.text_bits.mean, s.text_bits.stddev);
        std::snprintf(task, sizeof task, "%.1f +- %.1f", 100 * s.task_accuracy.mean, 100 * s.task_accuracy.stddev);
        std::snprintf(combined, sizeof combined, "%.3f +- %.3f", s.combined.mean, s.combined.stddev);
        std::printf("%-13s %4s %9.4g %10lld %15s %14s %15s %11.3f %15s %7.1f%s\n", method_name(s.method),
                    rank_label(s.rank).c_str(), s.lr,
                    static_cast<long long>(s.trainable), facts, text, task, s.task_bits.mean, combined, s.seconds.mean,
                    s.diverged ? ("  (" + std::to_string(s.diverged) + " diverged, scored 0)").c_str() : "");
    }
    std::printf("(mean +- standard deviation over seeds; combined = sqrt(facts kept x addition EM); a diverged run\n"
                " scores 0 for facts and addition and is left out of the bits-per-byte columns)\n");
}

/// The ranks of the adapter runs, ascending (only full fine-tuning: {0}).
template <class Rows>
std::vector<Index> ranks_of(const Rows& rows) {
    std::vector<Index> ranks;
    for (const auto& r : rows)
        if (r.rank != 0 && std::find(ranks.begin(), ranks.end(), r.rank) == ranks.end()) ranks.push_back(r.rank);
    std::sort(ranks.begin(), ranks.end());
    if (ranks.empty()) ranks.push_back(0);
    return ranks;
}

/// The task levels of a table, in its order.
inline std::vector<double> levels_of(const std::vector<EqualTask>& table) {
    std::vector<double> levels;
    for (const EqualTask& e : table)
        if (std::find(levels.begin(), levels.end(), e.level) == levels.end()) levels.push_back(e.level);
    return levels;
}

/// The verdicts on the paper's ordering: [rank][level] for v1 and v2.
struct Verdict {
    Index rank = 0;
    double level = 0;
    std::string v1, v2;
};

/// Full fine-tuning alone (rank 0) has no adapters to order: no verdicts.
inline std::vector<Verdict> verdicts(const std::vector<EqualTask>& table) {
    std::vector<Verdict> out;
    for (Index rank : ranks_of(table))
        for (double level : rank ? levels_of(table) : std::vector<double>{})
            out.push_back({rank, level, paper_ordering(table, rank, level, Method::lora_null_v1),
                           paper_ordering(table, rank, level, Method::lora_null_v2)});
    return out;
}

/// The equal-task-score table on the terminal: per rank, facts recalled at
/// each task level (full fine-tuning in every rank's table), then the verdicts.
inline void print_equal_task(const std::vector<EqualTask>& table, const std::vector<Summary>& rows) {
    if (table.empty()) return;
    // A curve needs two rates: with one per method the table would say nothing.
    const bool any_curve = std::any_of(rows.begin(), rows.end(), [&](const Summary& s) {
        return std::any_of(rows.begin(), rows.end(),
                           [&](const Summary& t) { return t.method == s.method && t.rank == s.rank && t.lr != s.lr; });
    });
    if (!any_curve) {
        std::printf("\n(knowledge at equal task score needs two or more rates per method: --sweep, or --lr LIST)\n");
        return;
    }
    const std::vector<double> levels = levels_of(table);
    std::printf("\nknowledge kept at equal task score: facts recalled %% (mean +- sd over the seeds that reach the level)\n"
                "and held-out text bits/byte; '(k/n)': k of n seeds reached it; 'above': the lowest rate already\n"
                "learns more; '-': not reached\n");
    for (Index rank : ranks_of(table)) {
        std::printf("\n%-13s %4s", "method", "rank");
        for (double level : levels) {
            char head[32];
            std::snprintf(head, sizeof head, "at EM %.0f%%", 100 * level);
            std::printf("   %-26s", head);
        }
        std::printf("\n");
        std::vector<Method> shown;
        for (const EqualTask& e : table)
            if ((e.rank == rank || e.rank == 0) && std::find(shown.begin(), shown.end(), e.method) == shown.end())
                shown.push_back(e.method);
        for (Method m : shown) {
            std::printf("%-13s %4s", method_name(m), rank_label(m == Method::full ? 0 : rank).c_str());
            for (double level : levels)
                for (const EqualTask& e : table)
                    if (e.method == m && (e.rank == rank || (m == Method::full && e.rank == 0)) && e.level == level) {
                        char cell[64];
                        if (e.reached == 0)
                            std::snprintf(cell, sizeof cell, "%s", e.above == e.seeds && e.seeds ? "above" : "-");
                        else if (e.reached < e.seeds)
                            std::snprintf(cell, sizeof cell, "%.1f +- %.1f %.3f (%zu/%zu)", 100 * e.facts.mean,
                                          100 * e.facts.stddev, e.text_bits.mean, e.reached, e.seeds);
                        else
                            std::snprintf(cell, sizeof cell, "%.1f +- %.1f %.3f", 100 * e.facts.mean, 100 * e.facts.stddev,
                                          e.text_bits.mean);
                        std::printf("   %-26s", cell);
                    }
            std::printf("\n");
        }
    }
    std::printf("\nthe paper's ordering LoRA < MiLoRA < CorDA < LoRA-Null, on facts recalled at equal task score:\n");
    for (const Verdict& v : verdicts(table))
        std::printf("  rank %ld, EM %.0f%%: v1 %s; v2 %s\n", long(v.rank), 100 * v.level, v.v1.c_str(), v.v2.c_str());
}

/// The invariants, one line, then what failed (stderr) and the runs that did
/// not train stably (stdout).
inline void print_checks(const Checks& checks) {
    std::printf("checks: outputs unchanged at initialisation (max %.1e relative), LoRA-Null A0 in the null space "
                "(max %.1e), v2 bound (worst output change / bound %.3f): %s\n",
                checks.max_init_logit_change, checks.max_null_space_residual, checks.worst_v2_bound_ratio,
                checks.ok() ? "all hold" : "FAILED");
    for (const std::string& u : checks.unstable) std::printf("note: %s\n", u.c_str());
    for (const std::string& f : checks.failures) std::fprintf(stderr, "check failed: %s\n", f.c_str());
}

/// Points on the upper-right Pareto frontier of (task, knowledge).
inline std::vector<std::pair<double, double>> pareto_frontier(const std::vector<Summary>& rows) {
    std::vector<std::pair<double, double>> points, out;
    for (const Summary& s : rows) points.push_back({s.task_accuracy.mean, s.fact_accuracy.mean});
    std::sort(points.begin(), points.end(), [](auto a, auto b) { return a.first > b.first || (a.first == b.first && a.second > b.second); });
    double best = -1;
    for (const auto& p : points)
        if (p.second > best) out.push_back(p), best = p.second;
    std::reverse(out.begin(), out.end());
    return out;
}

/// Writes every output file into `dir` (which exists and is empty);
/// `rows` and `equal` are summarise(runs) and equal_task_table(runs, levels).
template <class Spectra>
void write_outputs(const std::filesystem::path& dir, const nlohmann::json& settings, const Scores& before,
                   const std::vector<RunResult>& runs, const std::vector<Summary>& rows,
                   const std::vector<EqualTask>& equal, const Checks& checks, const Spectra& spectra) {
    namespace fs = std::filesystem;

    std::ostringstream csv;
    csv << "method,rank,lr,seed,trainable,seconds,text_bpb_before,text_bpb_after,fact_acc_before,fact_acc_after,"
           "task_acc_before,task_acc_after,task_answer_bits_after,final_train_loss,combined,init_logit_change,"
           "null_space_residual,diverged\n";
    for (const RunResult& r : runs) {
        double tail = 0;
        const std::size_t n = r.losses.size(), k = std::max<std::size_t>(1, n / 10);
        for (std::size_t i = 0; i < std::min(k, n); ++i) tail += r.losses[n - 1 - i];
        csv << method_name(r.method) << ',' << r.rank << ',' << r.lr << ',' << r.seed << ',' << r.trainable << ',' << r.seconds << ','
            << before.text_bits_per_byte << ',' << r.after.text_bits_per_byte << ',' << before.fact_accuracy << ','
            << r.after.fact_accuracy << ',' << before.task_accuracy << ',' << r.after.task_accuracy << ','
            << r.after.task_answer_bits << ',' << (n ? tail / double(std::min(k, n)) : 0.0) << ',' << r.combined_score()
            << ',' << r.init_logit_change << ',' << r.null_space_residual << ',' << (r.diverged ? 1 : 0) << '\n';
    }
    loranull::io::write_text_atomically(dir / "runs.csv", csv.str());

    std::ostringstream sum;
    sum << "method,rank,lr,seeds,trainable,fact_acc_mean,fact_acc_std,text_bpb_mean,text_bpb_std,task_acc_mean,task_acc_std,"
           "task_answer_bits_mean,combined_mean,combined_std,seconds_mean,diverged\n";
    for (const Summary& s : rows)
        sum << method_name(s.method) << ',' << s.rank << ',' << s.lr << ',' << s.seeds << ',' << s.trainable << ',' << s.fact_accuracy.mean
            << ',' << s.fact_accuracy.stddev << ',' << s.text_bits.mean << ',' << s.text_bits.stddev << ','
            << s.task_accuracy.mean << ',' << s.task_accuracy.stddev << ',' << s.task_bits.mean << ','
            << s.combined.mean << ',' << s.combined.stddev << ',' << s.seconds.mean << ',' << s.diverged << '\n';
    loranull::io::write_text_atomically(dir / "summary.csv", sum.str());

    std::ostringstream layers;
    layers << "method,rank,lr,seed,layer,projection,output_change,bound,base_output,bound_applies\n";
    for (const RunResult& r : runs)
        for (const LayerBound& l : r.layers)
            layers << method_name(r.method) << ',' << r.rank << ',' << r.lr << ',' << r.seed << ',' << l.layer << ',' << l.projection << ','
                   << l.output_change << ',' << l.bound << ',' << l.base_output << ',' << (l.bound_applies ? 1 : 0) << '\n';
    loranull::io::write_text_atomically(dir / "layers.csv", layers.str());

    // Empty fields where no seed reached the level.
    std::ostringstream eq;
    eq << "method,rank,task_level,seeds,seeds_reached,seeds_above,fact_acc_mean,fact_acc_std,text_bpb_mean,text_bpb_std,"
          "lr_mean\n";
    for (const EqualTask& e : equal) {
        eq << method_name(e.method) << ',' << e.rank << ',' << e.level << ',' << e.seeds << ',' << e.reached << ','
           << e.above;
        if (e.reached)
            eq << ',' << e.facts.mean << ',' << e.facts.stddev << ',' << e.text_bits.mean << ',' << e.text_bits.stddev << ','
               << e.lr.mean << '\n';
        else
            eq << ",,,,,\n";
    }
    loranull::io::write_text_atomically(dir / "equal_task.csv", eq.str());

    nlohmann::json j;
    j["format"] = "loranull.experiment/2";
    j["settings"] = settings;
    j["pretrained"] = {{"text_bits_per_byte", before.text_bits_per_byte},
                       {"fact_accuracy", before.fact_accuracy},
                       {"task_accuracy", before.task_accuracy},
                       {"task_answer_bits", before.task_answer_bits}};
    j["runs"] = nlohmann::json::array();
    for (const RunResult& r : runs) {
        nlohmann::json run = {{"method", method_name(r.method)},
                              {"rank", r.rank},
                              {"lr", r.lr},
                              {"seed", r.seed},
                              {"trainable", r.trainable},
                              {"seconds", r.seconds},
                              {"text_bits_per_byte", r.after.text_bits_per_byte},
                              {"fact_accuracy", r.after.fact_accuracy},
                              {"task_accuracy", r.after.task_accuracy},
                              {"task_answer_bits", r.after.task_answer_bits},
                              {"combined", r.combined_score()},
                              {"init_logit_change", r.init_logit_change},
                              {"null_space_residual", r.null_space_residual},
                              {"diverged", r.diverged},
                              {"losses", r.losses}};
        run["layers"] = nlohmann::json::array();
        for (const LayerBound& l : r.layers)
            run["layers"].push_back({{"layer", l.layer}, {"projection", l.projection}, {"output_change", l.output_change},
                                     {"bound", l.bound}, {"base_output", l.base_output}, {"bound_applies", l.bound_applies}});
        j["runs"].push_back(run);
    }
    j["summary"] = nlohmann::json::array();
    for (const Summary& s : rows)
        j["summary"].push_back({{"method", method_name(s.method)}, {"rank", s.rank}, {"lr", s.lr}, {"seeds", s.seeds},
                                {"trainable", s.trainable}, {"fact_accuracy", {s.fact_accuracy.mean, s.fact_accuracy.stddev}},
                                {"text_bits_per_byte", {s.text_bits.mean, s.text_bits.stddev}},
                                {"task_accuracy", {s.task_accuracy.mean, s.task_accuracy.stddev}},
                                {"combined", {s.combined.mean, s.combined.stddev}},
                                {"diverged", s.diverged}});
    j["task_levels"] = levels_of(equal);
    j["equal_task"] = nlohmann::json::array();
    for (const EqualTask& e : equal) {
        nlohmann::json row = {{"method", method_name(e.method)}, {"rank", e.rank},     {"task_level", e.level},
                              {"seeds", e.seeds},                {"reached", e.reached}, {"above", e.above}};
        if (e.reached) {
            row["fact_accuracy"] = {e.facts.mean, e.facts.stddev};
            row["text_bits_per_byte"] = {e.text_bits.mean, e.text_bits.stddev};
            row["lr"] = e.lr.mean;
        }
        j["equal_task"].push_back(row);
    }
    j["verdicts"] = nlohmann::json::array();
    for (const Verdict& v : verdicts(equal))
        j["verdicts"].push_back({{"rank", v.rank}, {"task_level", v.level}, {"lora_null_v1", v.v1}, {"lora_null_v2", v.v2}});
    j["checks"] = {{"ok", checks.ok()},
                   {"max_init_logit_change", checks.max_init_logit_change},
                   {"init_tolerance", Checks::init_tolerance},
                   {"max_null_space_residual", checks.max_null_space_residual},
                   {"null_space_tolerance", Checks::null_space_tolerance},
                   {"worst_v2_bound_ratio", checks.worst_v2_bound_ratio},
                   {"v2_bound_applies", checks.v2_bound_applies},
                   {"every_loss_fell", checks.every_loss_fell},
                   {"unstable", checks.unstable},
                   {"failures", checks.failures}};
    j["spectra"] = nlohmann::json::array();
    for (const auto& [name, values] : spectra) j["spectra"].push_back({{"covariance", name}, {"eigenvalues", values}});
    loranull::io::write_text_atomically(dir / "results.json", j.dump(1) + "\n");

    // --- plots: data blocks (gnuplot's `index`) and scripts ------------------
    // One panel per rank: that rank's adapters and full fine-tuning.
    std::ostringstream frontier;
    std::string panels;
    int block = 0;
    const std::vector<Index> ranks = ranks_of(rows);
    for (Index rank : ranks) {
        std::vector<Summary> panel;
        std::vector<Method> methods;
        for (const Summary& s : rows)
            if (s.rank == rank || s.rank == 0) {
                panel.push_back(s);
                if (std::find(methods.begin(), methods.end(), s.method) == methods.end()) methods.push_back(s.method);
            }
        // Each method's points in rising rate (merged folders may hold them in any order).
        std::stable_sort(panel.begin(), panel.end(), [](const Summary& a, const Summary& b) { return a.lr < b.lr; });
        std::string plot = "plot ";
        for (Method m : methods) {
            frontier << "# " << method_name(m) << " rank " << (m == Method::full ? 0 : rank) << "\n";
            for (const Summary& s : panel)
                if (s.method == m)
                    frontier << s.task_accuracy.mean << ' ' << s.fact_accuracy.mean << ' ' << s.lr << ' '
                             << s.task_accuracy.stddev << ' ' << s.fact_accuracy.stddev << '\n';
            frontier << "\n\n";
            plot += "'frontier.dat' index " + std::to_string(block++) + " using 1:2:4:5 with xyerrorlines pt 7 title '" +
                    method_name(m) + "', ";
        }
        frontier << "# pareto frontier, rank " << rank << "\n";
        for (const auto& [x, y] : pareto_frontier(panel)) frontier << x << ' ' << y << "\n";
        frontier << "\n\n";
        plot += "'frontier.dat' index " + std::to_string(block++) +
                " using 1:2 with lines dt 2 lw 2 lc rgb 'black' title 'Pareto frontier'\n";
        panels += (rank ? "set title 'rank " + std::to_string(rank) + "'\n" : std::string("set title ''\n")) + plot;
    }
    loranull::io::write_text_atomically(dir / "frontier.dat", frontier.str());
    char pretrained_line[160];
    std::snprintf(pretrained_line, sizeof pretrained_line,
                  "set arrow from graph 0, first %.6f to graph 1, first %.6f nohead dt 3 lc rgb 'gray'\n",
                  before.fact_accuracy, before.fact_accuracy);
    const int width = 900 + 600 * (static_cast<int>(ranks.size()) - 1);
    plot_png(dir / "frontier.png",
             png_header(width, 600) + "set multiplot layout 1," + std::to_string(ranks.size()) +
                 " title 'Knowledge kept against task learned (each method at its learning rates)'\n"
                 "set xlabel 'held-out addition, exact match'\nset ylabel 'facts recalled after fine-tuning'\n"
                 "set xrange [0:1]\nset yrange [0:1]\nset key inside top right font ',9'\n" +
                 std::string(pretrained_line) + panels + "unset multiplot\n");

    std::ostringstream losses, loss_titles;
    std::size_t series = 0;
    for (const Summary& s : rows) {
        losses << "# " << method_name(s.method) << " rank " << s.rank << " lr " << s.lr << "\n";
        // Mean over seeds, smoothed over a window of 1/50 of the steps.
        std::vector<double> mean;
        std::size_t seeds = 0;
        for (const RunResult& r : runs)
            if (r.method == s.method && r.rank == s.rank && r.lr == s.lr) {
                if (mean.empty()) mean.assign(r.losses.size(), 0.0);
                for (std::size_t i = 0; i < std::min(mean.size(), r.losses.size()); ++i) mean[i] += r.losses[i];
                ++seeds;
            }
        const std::size_t window = std::max<std::size_t>(1, mean.size() / 50);
        double acc = 0;
        for (std::size_t i = 0; i < mean.size(); ++i) {
            acc += mean[i] / double(seeds);
            if (i >= window) acc -= mean[i - window] / double(seeds);
            if ((i + 1) % window == 0) losses << i + 1 << ' ' << acc / double(std::min(i + 1, window)) << '\n';
        }
        losses << "\n\n";
        char t[64];
        if (s.rank)
            std::snprintf(t, sizeof t, "%s/r%ld@%.4g ", method_name(s.method), long(s.rank), s.lr);
        else
            std::snprintf(t, sizeof t, "%s@%.4g ", method_name(s.method), s.lr);
        loss_titles << t;
        ++series;
    }
    loranull::io::write_text_atomically(dir / "losses.dat", losses.str());
    plot_png(dir / "losses.png", png_header(1000, 600) + "set title 'Fine-tuning loss (mean over seeds)'\n"
                                                           "set xlabel 'step'\nset ylabel 'bits per byte'\nset logscale y\n"
                                                           "titles = '" + loss_titles.str() + "'\n"
                                                           "plot for [i=0:" + std::to_string(series - 1) +
                                                           "] 'losses.dat' index i using 1:2 with lines title word(titles, i+1)\n");

    std::ostringstream spectrum, spectrum_titles;
    for (const auto& [name, values] : spectra) {
        spectrum << "# " << name << "\n";
        const double top = values.empty() ? 1.0 : std::max(values.front(), 1e-300);
        for (std::size_t i = 0; i < values.size(); ++i) spectrum << i + 1 << ' ' << std::max(values[i] / top, 1e-18) << '\n';
        spectrum << "\n\n";
        spectrum_titles << name << ' ';
    }
    loranull::io::write_text_atomically(dir / "spectrum.dat", spectrum.str());
    if (!spectra.empty())
        plot_png(dir / "spectrum.png",
             png_header() + "set title 'Calibration covariance spectra (eigenvalue / largest)'\n"
                            "set xlabel 'index (descending)'\nset ylabel 'lambda_i / lambda_1'\nset logscale y\n"
                            "titles = '" + spectrum_titles.str() + "'\n"
                            "plot for [i=0:" + std::to_string(spectra.size() - 1) +
                            "] 'spectrum.dat' index i using 1:2 with lines lw 2 title word(titles, i+1)\n");
}

}  // namespace experiment
