#pragma once
// The experiment's pipeline, generic over the backend: what main.cpp runs on
// the CPU and main_cuda.cu on the GPU, and the merge of earlier outputs.
//
//   1. load the shipped byte-level LLaMA, pretrained on the Jargon File and a
//      generated knowledge base of facts (loranull-pretrain made it)
//   2. calibrate: knowledge samples through the model, one covariance per block
//      and distinct linear input
//   3. fine-tune on addition with every method (same rank, steps, schedule, seed)
//   4. measure what each kept (held-out bits per byte, facts recalled) and
//      learned (held-out exact match), the SPEC.md section 4 bound per layer
//   5. write the table, CSV/JSON and plots; check the invariants

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <loranull/io/hf_checkpoint.hpp>

#include "cli.hpp"
#include "corpus.hpp"
#include "experiment.hpp"
#include "methods.hpp"
#include "rates.hpp"
#include "report.hpp"

#ifndef LORANULL_DEFAULT_CHECKPOINT
#define LORANULL_DEFAULT_CHECKPOINT "data/jargon-facts-llama"
#endif

namespace experiment {

namespace fs = std::filesystem;
using loranull::fail;
using loranull::LinearInput;
using loranull::LlamaModel;

/// The rates a method runs at, at one rank: --lr for every method, else
/// --lr-full / --lr-adapter for its kind, else its frontier (rates.hpp).
inline std::vector<double> rates(const Args& args, Method method, Index rank, bool sweep) {
    const std::string name = args.has("--lr") ? "--lr" : method == Method::full ? "--lr-full" : "--lr-adapter";
    if (!args.has(name)) return frontier_rates(method, rank, sweep);
    std::vector<double> out;
    for (const std::string& s : args.list(name, "")) out.push_back(Args::parse_real(name, s, 1e-7, 1.0));
    return out;
}

/// --ranks LIST or --rank R (default 32), each distinct.
inline std::vector<Index> ranks(const Args& args) {
    require(!(args.has("--rank") && args.has("--ranks")), "options", "--rank and --ranks: give one of them");
    const std::string name = args.has("--ranks") ? "--ranks" : "--rank";
    std::vector<Index> out;
    for (const std::string& s : args.list(name, "32")) {
        long r = 0;
        try {
            r = loranull::tools::parse_integer<long>(name, s);
        } catch (const loranull::tools::UsageError&) {
            fail("options", name, " ", s, ": need a positive integer");
        }
        require(r >= 1, "options", name, " ", s, ": need a positive integer");
        require(std::find(out.begin(), out.end(), r) == out.end(), "options", "--ranks: ", r, " is given twice");
        out.push_back(r);
    }
    return out;
}

/// --task-levels LIST: exact-match levels in (0, 1] of the equal-task table.
inline std::vector<double> task_levels(const Args& args) {
    std::vector<double> out;
    for (const std::string& s : args.list("--task-levels", "0.25,0.5,0.9"))
        out.push_back(Args::parse_real("--task-levels", s, 1e-9, 1.0));
    return out;
}

inline std::vector<Fact> read_facts(const fs::path& path) {
    std::ifstream in(path);
    require(bool(in), "read_facts", "cannot open ", path.string(), " (the checkpoint folder must hold facts.tsv)");
    std::string line;
    require(std::getline(in, line) && line == "entity\tattribute\tvalue", "read_facts", path.string(),
            " does not start with the header 'entity<TAB>attribute<TAB>value'");
    std::vector<Fact> facts;
    for (int number = 2; std::getline(in, line); ++number) {
        if (line.empty()) continue;
        std::stringstream ss(line);
        Fact f;
        require(std::getline(ss, f.entity, '\t') && std::getline(ss, f.attribute, '\t') && std::getline(ss, f.value) &&
                    !f.entity.empty() && !f.attribute.empty() && !f.value.empty() && f.value.find('\t') == std::string::npos,
                "read_facts", path.string(), " line ", number, " is not 'entity<TAB>attribute<TAB>value'");
        facts.push_back(f);
    }
    require(!facts.empty(), "read_facts", path.string(), " holds no facts");
    return facts;
}

/// --out may be new or hold an earlier output of this program (replaced);
/// anything else is refused before any work.
inline void check_output_folder(const fs::path& out) {
    require(!fs::exists(out) || fs::exists(out / "results.json"), "options", "--out ", out.string(),
            " exists and does not hold an earlier run of this program: refusing to replace it");
}

/// Checks the invariants, prints the table, writes every output into
/// out.partial and renames it to out (replacing an earlier run) only when
/// complete.
inline Checks publish(const fs::path& out, const nlohmann::json& settings, const Scores& before,
                      const std::vector<RunResult>& runs,
                      const std::vector<std::pair<std::string, std::vector<double>>>& spectra,
                      const std::vector<double>& levels) {
    const Checks checks = Checks::of(runs);
    const std::vector<Summary> rows = summarise(runs);
    const std::vector<EqualTask> equal = equal_task_table(runs, levels);
    print_table(before, rows);
    print_equal_task(equal, rows);
    const fs::path partial = out.string() + ".partial";
    fs::remove_all(partial);
    fs::create_directories(partial);
    write_outputs(partial, settings, before, runs, rows, equal, checks, spectra);
    if (fs::exists(out)) fs::remove_all(out);
    fs::rename(partial, out);
    return checks;
}

/// The runs, pre-trained scores, settings and spectra of earlier outputs
/// (this format or the first, whose runs carry no rank: theirs is the
/// folder's one --rank).
inline int merge_outputs(const Args& args) {
    const fs::path out = args.get("--out", "results");
    check_output_folder(out);
    std::vector<RunResult> runs;
    Scores before;
    nlohmann::json settings;
    std::vector<std::pair<std::string, std::vector<double>>> spectra;
    std::vector<std::string> sources;
    for (const std::string& dir : args.list("--merge", "")) {
        const fs::path file = fs::path(dir) / "results.json";
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(read_file(file));
        } catch (const nlohmann::json::exception& e) {
            fail("merge", file.string(), " is not valid JSON: ", e.what());
        }
        const std::string format = j.value("format", "");
        require(format == "loranull.experiment/1" || format == "loranull.experiment/2", "merge", file.string(),
                " is not the output of loranull-experiment");
        if (sources.empty()) {
            settings = j["settings"];
            const auto& p = j["pretrained"];
            before = {p["text_bits_per_byte"], p["fact_accuracy"], p["task_accuracy"], p["task_answer_bits"]};
            for (const auto& s : j["spectra"]) spectra.push_back({s["covariance"], s["eigenvalues"]});
        } else {
            for (const char* key : {"model", "steps", "batch", "digits", "calibration_samples"})
                require(settings[key] == j["settings"][key], "merge", file.string(), " was run with a different ", key,
                        " (", j["settings"][key].dump(), " against ", settings[key].dump(), ")");
        }
        sources.push_back(dir);
        for (const auto& r : j["runs"]) {
            RunResult run;
            run.method = parse_method(r["method"]);
            run.rank = !uses_adapters(run.method) ? 0 : r.contains("rank") ? r["rank"].get<Index>()
                                                                            : j["settings"]["rank"].get<Index>();
            run.lr = r["lr"];
            run.seed = r["seed"];
            run.trainable = r["trainable"];
            run.seconds = r["seconds"];
            run.diverged = r.value("diverged", false);
            auto number = [](const nlohmann::json& v) { return v.is_null() ? std::nan("") : double(v); };
            run.after = {number(r["text_bits_per_byte"]), number(r["fact_accuracy"]), number(r["task_accuracy"]),
                         number(r["task_answer_bits"])};
            run.init_logit_change = r["init_logit_change"];
            run.null_space_residual = r["null_space_residual"];
            run.losses = r["losses"].get<std::vector<double>>();
            for (const auto& l : r["layers"])
                run.layers.push_back({l["layer"], l["projection"], l["output_change"], l["bound"], l["base_output"],
                                      l["bound_applies"]});
            runs.push_back(std::move(run));
        }
    }
    settings["merged_from"] = sources;
    settings.erase("rank");
    settings["ranks"] = ranks_of(runs);
    const std::vector<double> levels = task_levels(args);
    settings["task_levels"] = levels;
    const Checks checks = publish(out, settings, before, runs, spectra, levels);
    std::printf("\nmerged %zu runs from %zu folders into %s/\n", runs.size(), sources.size(), out.string().c_str());
    print_checks(checks);
    return checks.ok() ? 0 : 3;
}

template <class Bk>
int run_experiment(Bk& backend, const Args& args) {
    const fs::path model_dir = args.get("--model", LORANULL_DEFAULT_CHECKPOINT);
    const fs::path out = args.get("--out", "results");
    check_output_folder(out);
    const bool sweep = args.flag("--sweep");
    const bool quiet = args.flag("--quiet");

    std::vector<Method> methods;
    for (const std::string& name : args.list("--methods", "full,lora,pissa,milora,corda,lora-null-v1,lora-null-v2"))
        methods.push_back(parse_method(name));
    const std::vector<Index> adapter_ranks = ranks(args);
    const std::vector<double> levels = task_levels(args);
    const long seeds = args.integer("--seeds", sweep ? 3 : 1, 1, 100);
    // Every rate list is parsed before any work, so a bad one fails at once.
    for (Method method : methods)
        for (Index rank : adapter_ranks) (void)rates(args, method, rank, sweep);

    Setup setup;
    setup.schedule.steps = args.integer("--steps", 300, 1, 1'000'000);
    setup.batch = args.integer("--batch", 32, 1, 4096);
    setup.quiet = quiet;
    const Index calib_samples = args.integer("--calib-samples", 256, 1, 1 << 20);
    const int digits = static_cast<int>(args.integer("--digits", 2, 1, 3));

    // --- the pre-trained model and its data -----------------------------------
    require(fs::is_directory(model_dir), "options", "--model ", model_dir.string(),
            " is not a folder (the shipped checkpoint is data/jargon-facts-llama; loranull-pretrain makes one)");
    LlamaModel<Bk, float> pretrained = loranull::io::load_hf_checkpoint<float>(backend, model_dir);
    require(pretrained.config.vocab_size == 256, "checkpoint", model_dir.string(), " has a vocabulary of ",
            pretrained.config.vocab_size, "; the experiment is byte-level (256)");
    for (Index rank : adapter_ranks) check_rank(pretrained.config, rank);
    setup.text_seq_len = std::min<Index>(128, pretrained.config.max_seq_len);
    setup.seq_len = std::min<Index>(64, pretrained.config.max_seq_len);
    const std::vector<Fact> facts = read_facts(model_dir / "facts.tsv");
    const TextCorpus corpus = TextCorpus::load(args.get("--text", default_text_path()));
    const AdditionTask task = AdditionTask::make(digits, digits == 1 ? 20 : 500, 2025);

    EvalData data;
    data.held_out_text = held_out_text_batches(corpus, 64, setup.text_seq_len, 16);
    data.facts = fact_items(facts);
    data.problems = problem_items(task.held_out);
    Rng calib_rng(233);  // the paper's calibration seed
    std::vector<Batch> calibration;
    for (Index done = 0; done < calib_samples; done += 16)
        calibration.push_back(knowledge_batch(corpus, facts, std::min<Index>(16, calib_samples - done), setup.text_seq_len,
                                              0.5, calib_rng));
    data.init_check = knowledge_batch(corpus, facts, 4, setup.text_seq_len, 0.5, calib_rng);

    std::printf("model: %s (%lld parameters, %ld blocks, dim %ld)\n", model_dir.string().c_str(),
                static_cast<long long>(pretrained.config.parameter_count()), long(pretrained.config.n_layers),
                long(pretrained.config.dim));
    std::printf("knowledge: %zu held-out text bytes, %zu facts; task: %d-digit addition, %zu held-out problems\n",
                corpus.held_out.size(), facts.size(), digits, task.held_out.size());
    const Scores before = measure(pretrained, data, setup.text_seq_len);
    std::printf("pre-trained: %.3f bits/byte on held-out text, %.1f%% of facts, %.1f%% of additions\n",
                before.text_bits_per_byte, 100 * before.fact_accuracy, 100 * before.task_accuracy);

    // --- calibration and null spaces (only what the methods need) --------------
    const bool any_null = std::any_of(methods.begin(), methods.end(), needs_null_space);
    Calibration<Bk> cal;
    std::vector<std::pair<std::string, std::vector<double>>> spectra;
    {  // always: the spectra are part of the report, and calibration costs one pass
        cal = calibrate(pretrained, calibration, setup.text_seq_len, 2048, quiet);
        std::printf("calibration: %ld samples, %ld tokens\n", long(cal.samples), long(cal.tokens));
        const Index last = pretrained.config.n_layers - 1;
        const std::pair<Index, LinearInput> shown[] = {
            {0, LinearInput::attn_in}, {last, LinearInput::attn_in}, {0, LinearInput::down_in}, {last, LinearInput::down_in}};
        for (const auto& [layer, input] : shown) {
            const auto& c = cal.covariances->block(layer).covariance(input);
            auto eigen = backend.symmetric_eigen(c.matrix());
            std::vector<double> values(eigen.values.rbegin(), eigen.values.rend());
            spectra.push_back({"block" + std::to_string(layer) + "." + loranull::input_name(input), values});
        }
    }
    // --- every method, rank, rate and seed ---------------------------------------
    // Full fine-tuning has no rank and runs once; each rank has its own null
    // spaces (the bottom r eigenvectors of the same covariances).
    std::vector<RunResult> runs;
    auto run_all = [&](Method method, Index rank, const NullSpaces<Bk>& spaces) {
        setup.rank = rank;
        for (double lr : rates(args, method, rank, sweep))
            for (long seed = 1; seed <= seeds; ++seed) {
                runs.push_back(run(pretrained, method, lr, static_cast<std::uint64_t>(seed), setup, cal, spaces, task, data));
                const RunResult& r = runs.back();
                std::printf("%-13s rank %-3s lr %-9.4g seed %ld: facts %.1f%%, text %.3f bits/byte, addition %.1f%% (%.0f s)\n",
                            method_name(method), rank_label(r.rank).c_str(), lr, seed,
                            100 * r.after.fact_accuracy, r.after.text_bits_per_byte, 100 * r.after.task_accuracy, r.seconds);
                std::fflush(stdout);
            }
    };
    if (std::find(methods.begin(), methods.end(), Method::full) != methods.end())
        run_all(Method::full, 0, NullSpaces<Bk>{});
    for (Index rank : adapter_ranks) {
        NullSpaces<Bk> spaces;
        if (any_null) {
            spaces = null_spaces(cal, rank);
            for (std::size_t l = 0; l < spaces.size(); ++l)
                for (std::size_t i = 0; i < 4; ++i)
                    if (const std::string m = spaces[l][i].rank_report.message(); !m.empty())
                        std::printf("warning: rank %ld, block %zu %s: %s\n", long(rank), l,
                                    loranull::input_name(loranull::all_inputs[i]), m.c_str());
        }
        for (Method method : methods)
            if (method != Method::full) run_all(method, rank, spaces);
    }

    // --- outputs -----------------------------------------------------------------
    nlohmann::json settings = {{"model", model_dir.string()},
                               {"ranks", adapter_ranks},
                               {"task_levels", levels},
                               {"sweep", sweep},
                               {"steps", setup.schedule.steps},
                               {"batch", setup.batch},
                               {"seq_len", setup.seq_len},
                               {"warmup_fraction", setup.schedule.warmup_fraction},
                               {"final_lr_fraction", setup.schedule.final_lr_fraction},
                               {"seeds", seeds},
                               {"calibration_samples", calib_samples},
                               {"calibration_seq_len", setup.text_seq_len},
                               {"digits", digits},
                               {"held_out_problems", task.held_out.size()},
                               {"facts", facts.size()},
                               {"device", args.get("--device", "cpu")}};
    const Checks checks = publish(out, settings, before, runs, spectra, levels);
    std::printf("\nwrote %s/ (runs.csv, summary.csv, equal_task.csv, layers.csv, results.json, frontier.png, losses.png, "
                "spectrum.png)\n",
                out.string().c_str());
    print_checks(checks);
    return checks.ok() ? 0 : 3;
}

}  // namespace experiment
