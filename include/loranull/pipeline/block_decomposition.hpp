#pragma once
// One block's initialisation in a build: the method of lora/methods.hpp on its
// seven projections, with the block's null spaces (LoRA-Null) and summed
// covariances, measured (the reconstruction and SPEC.md section 4's report),
// as the files the build publishes (BlockOutput: the covariance files with
// --save-covariances, then the block file). What AdapterBuilder runs on the
// rank that owns the block; generic over the backend, no Eigen.

#include <array>
#include <cstdint>
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

/// The null space of each input (LoRA-Null), with its rank report: a
/// deficient one is refused, or warned of with --allow-rank-deficient.
template <class Bk>
std::optional<std::array<NullSpace<Bk, double>, 4>> block_null_spaces(const BuildOptions& o, const MethodInfo& method,
                                                                      Index layer,
                                                                      const BlockCalibration<Bk, double>* cal,
                                                                      std::vector<std::string>& warnings) {
    if (!cal || method.method != Method::lora_null) return std::nullopt;
    auto spaces = cal->null_spaces(o.rank);  // rank deficiency reported, not thrown
    for (LinearInput input : all_inputs) {
        const auto& ns = spaces[BlockCalibration<Bk, double>::slot(input)];
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
template <class Bk>
BlockOutput decompose_block(Bk& b, const BuildOptions& o, const MethodInfo& method, const LlamaConfig& model,
                            const std::string& settings_hash, io::HfCheckpointReader& checkpoint, Index layer,
                            const BlockCalibration<Bk, double>* cal) {
    using MatrixD = matrix_t<Bk, double>;
    BlockOutput output;
    if (o.save_covariances && cal) output.files = covariance_files(layer, *cal);
    const LoraConfig config{o.rank, o.lora_alpha(), o.seed + static_cast<std::uint64_t>(layer) * 7919u};
    const double s = config.scale();
    const auto spaces = block_null_spaces(o, method, layer, cal, output.warnings);
    std::array<std::optional<MatrixD>, 4> c_matrix;  // C per input, computed once for CorDA and the report
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
            if (!c_matrix[input]) c_matrix[input] = cal->covariance(kind).matrix();
            data = cal->data_for(kind, spaces ? &*spaces : nullptr);
            data.covariance_matrix = &*c_matrix[input];
        }
        const LoraFactors<Bk, double> f = initialise(b, w, method.method, data, config);
        if (!b.all_finite(f.A) || !b.all_finite(f.B) || !b.all_finite(f.W_res))
            refuse_input(name, ": the ", o.method, " initialisation produced NaN or Inf");
        nlohmann::json r = nlohmann::json::object();
        r["module"] = projection_path(kind);
        r["reconstruction"] = reconstruction_error(b, w, f);
        if (cal) {
            const InitialKnowledgeReport k = initial_knowledge_report(b, w, f.A, s, *c_matrix[input]);
            r["energy"] = k.energy;
            r["bound"] = k.bound;
            r["tight"] = k.tight;
            if (spaces) r["null_space_energy"] = (*spaces)[input].energy_fraction();
        }
        reports.push_back(r);
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
