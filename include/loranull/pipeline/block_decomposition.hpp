#pragma once
// One block's initialisation in a build: the method of lora/methods.hpp on its
// seven projections, with the block's null spaces (LoRA-Null) and summed
// covariances, measured (the reconstruction and SPEC.md section 4's report),
// as the files the build publishes (BlockOutput: the covariance files with
// --save-covariances, then the block file). What AdapterBuilder runs on the
// rank that owns the block; generic over the backend, no Eigen.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "loranull/io/covariance_file.hpp"
#include "loranull/io/hf_checkpoint.hpp"
#include "loranull/io/safetensors_writer.hpp"
#include "loranull/llama/calibration.hpp"
#include "loranull/lora/knowledge_report.hpp"
#include "loranull/lora/methods.hpp"
#include "loranull/pipeline/build_folder.hpp"
#include "loranull/pipeline/build_options.hpp"
#include "loranull/pipeline/build_settings.hpp"

namespace loranull::pipeline {

/// --save-covariances: the block's four covariance files.
template <class Bk>
std::vector<std::pair<std::string, std::string>> covariance_files(Index layer, const BlockCalibration<Bk, double>& cal) {
    std::vector<std::pair<std::string, std::string>> files;
    for (LinearInput i : all_inputs)
        files.emplace_back("covariances/layer-" + std::to_string(layer) + "." + input_name(i) + ".safetensors",
                           io::covariance_file(cal.covariance(i)).bytes());
    return files;
}

/// fp32 panels round each entry of C by about eps_f lambda_max / sqrt(tokens)
/// (a float product's rounding, averaged over the tokens: measured within 3x
/// in accumulation_study and the tests); a null space whose mean eigenvalue is
/// within this factor of twice that carries up to ~1/factor relative error in
/// its energy and bound (docs/math.md, "Accumulation").
inline constexpr double fp32_panels_margin = 1e3;

/// The null space of each input (LoRA-Null), with its rank report: a
/// deficient one is refused, or warned of with --allow-rank-deficient.
template <class Bk>
std::optional<std::array<NullSpace<Bk, double>, 4>> block_null_spaces(const BuildOptions& o, const MethodInfo& method,
                                                                      Index layer,
                                                                      const BlockCalibration<Bk, double>* cal,
                                                                      const std::array<matrix_t<Bk, double>, 4>& c,
                                                                      std::vector<std::string>& warnings) {
    if (!cal || method.method != Method::lora_null) return std::nullopt;
    auto spaces = cal->null_spaces(o.rank, c);  // rank deficiency reported, not thrown
    for (LinearInput input : all_inputs) {
        const auto& ns = spaces[BlockCalibration<Bk, double>::slot(input)];
        if (o.accumulation == Accumulation::fp32_panels && ns.rank_report.largest_eigenvalue > 0) {
            const double tokens = double(cal->covariance(input).tokens());
            const double rounding = 2 * double(std::numeric_limits<float>::epsilon()) *
                                    ns.rank_report.largest_eigenvalue / std::sqrt(std::max(tokens, 1.0));
            const double mean = std::accumulate(ns.eigenvalues.begin(), ns.eigenvalues.end(), 0.0) / double(ns.rank());
            if (mean < fp32_panels_margin * rounding)
                warnings.push_back("warning: layer " + std::to_string(layer) + " " + input_name(input) +
                                   ": the null space's mean eigenvalue (" +
                                   number_text(mean / ns.rank_report.largest_eigenvalue) +
                                   " of the largest) is within " + number_text(fp32_panels_margin) +
                                   "x of --accumulate fp32-panels' rounding (~" +
                                   number_text(rounding / ns.rank_report.largest_eigenvalue) +
                                   "): its energy and bound may be off by " +
                                   number_text(rounding / mean) +
                                   " or more, its subspace more; rerun with --accumulate fp64");
        }
        if (!ns.rank_report.deficient) continue;
        const std::string message = "layer " + std::to_string(layer) + " " + input_name(input) + ": " +
                                    ns.rank_report.message();
        if (!o.allow_rank_deficient) refuse_input(message, " (pass --allow-rank-deficient to continue)");
        warnings.push_back("warning: " + message);
    }
    return spaces;
}

/// Initialises block `layer`'s seven projections with `method` and measures
/// them: its block file (residual weights, adapter factors, the report),
/// after its covariance files with --save-covariances. `cal` is the block's
/// summed calibration (null without calibration data).
/// `timings` (optional) gets the null spaces' and the report's seconds added.
template <class Bk>
BlockOutput decompose_block(Bk& b, const BuildOptions& o, const MethodInfo& method, const LlamaConfig& model,
                            const std::string& settings_hash, io::HfCheckpointReader& checkpoint, Index layer,
                            const BlockCalibration<Bk, double>* cal, BuildTimings* timings = nullptr) {
    using MatrixD = matrix_t<Bk, double>;
    BuildTimings local;
    BuildTimings& time = timings ? *timings : local;
    BlockOutput output;
    if (o.save_covariances && cal) output.files = covariance_files(layer, *cal);
    const LoraConfig config{o.rank, o.lora_alpha(), o.seed + static_cast<std::uint64_t>(layer) * 7919u};
    const double s = config.scale();
    // C per input, formed once: the null spaces, CorDA and the report read it.
    auto t = BuildClock::now();
    std::array<MatrixD, 4> c_matrix;
    if (cal) c_matrix = cal->matrices();
    const auto spaces = block_null_spaces(o, method, layer, cal, c_matrix, output.warnings);
    time.null_spaces += settled_seconds_since(b, t);
    io::SafetensorsWriter writer;
    nlohmann::json reports = nlohmann::json::array();
    for (ProjectionKind kind : all_projections) {
        const std::size_t input = BlockCalibration<Bk, double>::slot(input_of(kind));
        const std::string name = "model.layers." + std::to_string(layer) + "." + projection_path(kind);
        const auto shape = projection_shape(model, kind);
        const io::TensorInfo& info = checkpoint.checked_info(name + ".weight", shape[0], shape[1]);
        const io::Dtype residual_dtype = o.dtype.value_or(info.dtype);
        const io::Dtype adapter_dtype = residual_dtype == io::Dtype::F64 ? io::Dtype::F32 : residual_dtype;
        const MatrixD w = b.upload(checkpoint.read<double>(name + ".weight", shape[0], shape[1]));
        MethodData<Bk, double> data;
        if (cal) {
            data = cal->data_for(kind, spaces ? &*spaces : nullptr);
            data.covariance_matrix = &c_matrix[input];
        }
        const LoraFactors<Bk, double> f = initialise(b, w, method.method, data, config);
        if (!b.all_finite(f.A) || !b.all_finite(f.B) || !b.all_finite(f.W_res))
            refuse_input(name, ": the ", o.method, " initialisation produced NaN or Inf");
        t = BuildClock::now();
        nlohmann::json r = nlohmann::json::object();
        r["module"] = projection_path(kind);
        r["reconstruction"] = reconstruction_error_estimate(b, w, f);  // O(m n 16), not another m n r product
        if (cal) {
            const InitialKnowledgeReport k =
                initial_knowledge_report(b, w, f.A, s, c_matrix[input], cal->output_energy(kind));
            r["energy"] = k.energy;
            r["bound"] = k.bound;
            r["tight"] = k.tight;
            if (spaces) r["null_space_energy"] = (*spaces)[input].energy_fraction();
        }
        reports.push_back(r);
        time.report += settled_seconds_since(b, t);
        writer.add(name + ".weight", b.download(f.W_res), residual_dtype);
        writer.add(name + ".lora_A.weight", b.download(f.A), adapter_dtype);
        writer.add(name + ".lora_B.weight", b.download(f.B), adapter_dtype);
    }
    writer.set_metadata("format", block_format);
    writer.set_metadata("settings", settings_hash);
    writer.set_metadata("layer", std::to_string(layer));
    writer.set_metadata("scale", number_text(config.scale()));
    writer.set_metadata("report", reports.dump());
    if (cal) {
        writer.set_metadata("tokens", std::to_string(cal->covariance(LinearInput::attn_in).tokens()));
        writer.set_metadata("normalisation", std::string(normalisation_name(o.normalisation)));
    }
    output.files.emplace_back(BuildFolder::block_name(layer), writer.bytes());
    return output;
}

}  // namespace loranull::pipeline
