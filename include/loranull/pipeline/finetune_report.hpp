#pragma once
// What a fine-tuned adapter kept (SPEC.md section 4), per layer and module, on
// calibration data: the activations X are the pre-trained model's (every
// adapter at its initial factors A0, B0, so W_res + s B0 A0 = W), streamed
// batch by batch through the blocks, and each module's sums of
//
//   ||A X||^2, ||A0 X||^2, ||(B A - B0 A0) X||^2, ||W X||^2
//
// for the trained (A, B) accumulated (lora/knowledge_report.hpp). With A
// frozen (--train B) the change s ||(B - B0) A0 X||_F is at most
// s ||B - B0||_2 ||A0 X||_F in every module: `bound_holds` checks it, with a
// relative slack of 1e-4 for float32 rounding of the two sides.

#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "loranull/lora/knowledge_report.hpp"
#include "loranull/llama/model.hpp"
#include "loranull/pipeline/calibration_text.hpp"
#include "loranull/pipeline/finetune_options.hpp"

namespace loranull::pipeline {

inline constexpr double bound_slack = 1e-4;

/// The report of `model`'s adapters (trained) on the calibration data of `o`.
template <class Bk, Real T>
nlohmann::json knowledge_after_training(Bk& b, LlamaModel<Bk, T>& model, const FinetuneOptions& o) {
    using Matrix = matrix_t<Bk, T>;
    BuildOptions source;  // the calibration fields, read as loranull-eval reads them
    source.model = o.model;
    source.calib = o.calib;
    source.calib_text = o.calib_text;
    source.text_format = o.calib_format;
    source.text_field = o.calib_field;
    source.samples = o.calib_samples ? o.calib_samples : (o.calib_text.empty() ? 0 : 16);
    source.seq_len = o.calib_seq_len;
    source.seed = o.calib_seed;
    const CalibrationTokens data = read_calibration(source, model.config);

    // The trained factors aside; the model computes the pre-trained function.
    struct Module {
        Index layer;
        ProjectionKind kind;
        Matrix A, B;
        KnowledgeSums sums;
    };
    std::vector<Module> modules;
    for (Index l = 0; l < model.config.n_layers; ++l)
        for (ProjectionKind kind : all_projections)
            if (auto& p = model.blocks[std::size_t(l)][kind]; p.lora) {
                modules.push_back({l, kind, std::move(p.lora->A), std::move(p.lora->B), {}});
                p.lora->A = p.lora->A0;
                p.lora->B = p.lora->B0;
            }
    const Index batch = default_batch(0, data);
    for (Index first = 0; first < data.samples; first += batch) {
        const Index count = std::min(batch, data.samples - first);
        const std::vector<std::int32_t> tokens(data.tokens.begin() + std::ptrdiff_t(first * data.seq_len),
                                               data.tokens.begin() + std::ptrdiff_t((first + count) * data.seq_len));
        Matrix x = b.embedding_forward(model.embed, tokens);
        for (Index l = 0; l < model.config.n_layers; ++l)
            x = model.block_forward(l, std::move(x), data.seq_len, [&](Index layer, LinearInput input, const Matrix& in) {
                for (Module& m : modules)
                    if (m.layer == layer && input_of(m.kind) == input)
                        m.sums.add(b, *model.blocks[std::size_t(layer)][m.kind].lora, m.A, m.B, in);
            });
    }

    nlohmann::json layers = nlohmann::json::array();
    bool all_hold = true;
    double worst_change = 0;
    for (Module& m : modules) {
        auto& lora = *model.blocks[std::size_t(m.layer)][m.kind].lora;
        lora.A = std::move(m.A);  // the trained factors back
        lora.B = std::move(m.B);
        const KnowledgeReport r = m.sums.report(b, lora, lora.A, lora.B);
        const bool holds = !r.bound_applies || r.output_change <= r.bound * (1 + bound_slack) + 1e-30;
        all_hold = all_hold && holds;
        worst_change = std::max(worst_change, r.relative_change());
        const double base = r.base_output > 0 ? r.base_output : 1.0;
        layers.push_back({{"module", "model.layers." + std::to_string(m.layer) + "." + projection_path(m.kind)},
                          {"relative_change", r.relative_change()},
                          {"relative_bound", r.bound / base},
                          {"bound_applies", r.bound_applies},
                          {"bound_holds", holds},
                          {"adapter_input", r.adapter_input / base},
                          {"initial_adapter_input", r.initial_adapter_input / base},
                          {"output_change", r.output_change},
                          {"bound", r.bound},
                          {"base_output", r.base_output}});
    }
    return {{"calibration", data.source},
            {"sequences", data.samples},
            {"seq_len", data.seq_len},
            {"max_relative_change", worst_change},
            {"bounds_hold", all_hold},
            {"modules", layers}};
}

}  // namespace loranull::pipeline
