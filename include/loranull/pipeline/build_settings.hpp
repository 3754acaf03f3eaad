#pragma once
// A build's settings (what build.json records, and what a resumed run must
// match), its timings, and its report (OUT/report.json).

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "loranull/io/atomic_file.hpp"
#include "loranull/io/hf_checkpoint.hpp"
#include "loranull/io/safetensors.hpp"
#include "loranull/pipeline/build_folder.hpp"
#include "loranull/pipeline/build_options.hpp"
#include "loranull/pipeline/calibration_tokens.hpp"

namespace loranull::pipeline {

using BuildClock = std::chrono::steady_clock;

inline double seconds_since(BuildClock::time_point t) {
    return std::chrono::duration<double>(BuildClock::now() - t).count();
}

/// Seconds since t once backend b's queued work is done: an asynchronous
/// backend (the GPU: synchronize()) would otherwise bill its work to whichever
/// stage next waits for a result.
template <class Bk>
double settled_seconds_since(Bk& b, BuildClock::time_point t) {
    if constexpr (requires { b.synchronize(); }) b.synchronize();
    return seconds_since(t);
}

/// Seconds spent per stage (report.json "seconds").
/// Seconds per part. reduction: the exchange between ranks (summing the
/// covariances, handing block files to rank 0, waiting for the slowest rank
/// at each agreement); 0 for one process.
struct BuildTimings {
    double load = 0, embed = 0, forward = 0, covariance = 0, reduction = 0, decomposition = 0, write = 0, assembly = 0;
    // Parts of `decomposition`: the null spaces (C formed, ?syevr, the rank
    // report's power iteration) and the knowledge report.
    double null_spaces = 0, report = 0;

    /// In a fixed order, for summing over ranks.
    std::array<double*, 10> parts() {
        return {&load, &embed, &forward, &covariance, &reduction, &decomposition, &write, &assembly, &null_spaces, &report};
    }
    static nlohmann::json to_json(const BuildTimings& t, double total) {
        return {{"total", total},           {"load", t.load},
                {"embedding", t.embed},     {"forward", t.forward},
                {"covariance", t.covariance}, {"reduction", t.reduction},
                {"decomposition", t.decomposition}, {"block_writes", t.write},
                {"assembly", t.assembly},   {"decomposition_null_spaces", t.null_spaces},
                {"decomposition_report", t.report}};
    }
};

/// The checkpoint in a settings record: its config's hash and each file's
/// fingerprint (header, size, sampled data), so that a checkpoint rewritten
/// since a run began does not resume it. Shared by the builder and the fine-tuning.
inline void record_checkpoint(nlohmann::json& settings, io::HfCheckpointReader& checkpoint) {
    nlohmann::json files = nlohmann::json::object();
    for (const std::string& f : checkpoint.files()) files[f] = checkpoint.reader(f).fingerprint();
    settings["model_config"] = text_hash(checkpoint.config_json().dump());
    settings["model_files"] = files;
}

/// Everything the outputs depend on: the checkpoint (its config and each
/// file's fingerprint: header, size, sampled data), the calibration
/// file's hash and the selection from it, and every
/// option that changes a number in the outputs.
inline nlohmann::json settings_json(const BuildOptions& o, const std::vector<Index>& layers,
                                    io::HfCheckpointReader& checkpoint, const CalibrationTokens& calibration, Index batch) {
    nlohmann::json s = nlohmann::json::object();
    s["format"] = settings_format;
    record_checkpoint(s, checkpoint);
    s["calib"] = o.has_calibration() ? nlohmann::json(calibration.hash) : nlohmann::json(nullptr);
    if (!o.calib_text.empty()) {  // how the text became windows: all of it decides the tokens
        nlohmann::json sampling = calibration.source;
        sampling.erase("file");  // the same text elsewhere resumes
        s["calib_text"] = sampling;
    }
    s["samples"] = calibration.samples;
    s["seq_len"] = calibration.seq_len;
    s["batch"] = batch;
    s["method"] = o.method;
    s["rank"] = o.rank;
    s["alpha"] = o.alpha > 0 ? nlohmann::json(o.alpha) : nlohmann::json("rank");
    s["seed"] = o.seed;
    s["layers"] = layers;
    s["normalisation"] = std::string(normalisation_name(o.normalisation));
    s["accumulate"] = std::string(accumulation_name(o.accumulation));
    s["dtype"] = o.dtype ? std::string(io::dtype_name(*o.dtype)) : "keep";
    s["export"] = o.export_plain ? "plain" : "residual";
    return s;
}

/// Peak resident memory of this process (VmHWM of /proc/self/status), bytes; -1 if unknown.
inline long long peak_memory_bytes() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("VmHWM:", 0) == 0) {
            long long kib = -1;
            std::sscanf(line.c_str() + 6, "%lld", &kib);
            return kib < 0 ? -1 : kib * 1024;
        }
    return -1;
}

/// OUT/report.json from the block files' reports: per layer and module the
/// reconstruction error and (with calibration) SPEC.md section 4's energy,
/// bound and tight bound; the timings, the peak memory and the warnings.
/// Written last: its presence marks the run finished.
inline nlohmann::json write_report(const BuildOptions& o, const std::vector<Index>& layers, const BuildFolder& folder,
                                   const CalibrationTokens& calibration, const BuildTimings& t, double total_seconds,
                                   const std::vector<std::string>& warnings, int ranks = 1,
                                   const BuildTimings* all_ranks = nullptr,
                                   const nlohmann::json& extra = nlohmann::json::object()) {
    nlohmann::json per_layer = nlohmann::json::array();
    for (Index l : layers) {
        const io::SafetensorsReader block(folder.block_path(l));
        per_layer.push_back({{"layer", l}, {"modules", nlohmann::json::parse(block.metadata().at("report"))}});
    }
    nlohmann::json r = nlohmann::json::object();
    r["format"] = "loranull.build.report/1";
    r["method"] = o.method;
    r["rank"] = o.rank;
    r["tokens"] = calibration.count();
    r["calibration"] = calibration.source.is_null() ? nlohmann::json(nullptr) : calibration.source;
    r["layers"] = per_layer;
    r["ranks"] = ranks;
    r["seconds"] = BuildTimings::to_json(t, total_seconds);  // rank 0's
    if (all_ranks) r["seconds_all_ranks"] = BuildTimings::to_json(*all_ranks, total_seconds * ranks);  // summed
    r["peak_memory_bytes"] = peak_memory_bytes();
    r["warnings"] = warnings;
    for (const auto& [key, value] : extra.items()) r[key] = value;  // the backend's own figures
    io::write_text_atomically(folder.path() / "report.json", r.dump(2) + "\n");
    return r;
}

}  // namespace loranull::pipeline
