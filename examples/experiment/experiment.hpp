#pragma once
// One run of the experiment: a method, a learning rate and a seed applied to
// the pre-trained model, fine-tuned on addition, then measured for what it
// kept and what it learned. Generic over the backend (the model's float
// matrices live there; evaluation downloads logits).

#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <loranull/lora/knowledge_report.hpp>
#include <loranull/llama/model.hpp>

#include "corpus.hpp"
#include "evaluate.hpp"
#include "methods.hpp"
#include "training.hpp"

namespace experiment {

/// Everything every run shares.
struct Setup {
    Index rank = 8;
    Schedule schedule;      // steps, peak lr set per run
    Index batch = 32;
    Index seq_len = 64;     // task sequences
    Index text_seq_len = 128;
    bool quiet = false;
};

/// What a model knows and can do at one moment.
struct Scores {
    double text_bits_per_byte = 0;  // held-out Jargon File
    double fact_accuracy = 0;       // closed-book, greedy
    double task_accuracy = 0;       // held-out addition, exact match
    double task_answer_bits = 0;    // bits per answer byte on held-out problems
};

/// SPEC.md section 4 for one adapted projection, on the probe activations.
struct LayerBound {
    Index layer = 0;
    std::string projection;
    double output_change = 0;   // s ||(B A - B0 A0) X||_F
    double bound = 0;           // s ||B - B0||_2 ||A0 X||_F
    double base_output = 0;     // ||W X||_F
    bool bound_applies = false; // A == A0
};

struct RunResult {
    Method method = Method::full;
    Index rank = 0;  // adapter rank; 0 for full fine-tuning
    double lr = 0;
    std::uint64_t seed = 0;
    Scores after;
    std::int64_t trainable = 0;
    double seconds = 0;
    std::vector<double> losses;          // bits per byte, every step
    std::vector<LayerBound> layers;      // adapter methods only
    double init_logit_change = 0;        // max |logits after init - before| / max |logits before|
    double null_space_residual = -1;     // max over layers of ||A0 - A0 U U^T||_F / ||A0||_F (LoRA-Null)
    bool diverged = false;               // the loss stopped being finite: scores are 0, text bits NaN

    double knowledge_score() const { return after.fact_accuracy; }
    double task_score() const { return after.task_accuracy; }
    /// The paper's combined score: geometric mean of knowledge and task.
    double combined_score() const { return std::sqrt(knowledge_score() * task_score()); }
};

/// The evaluation sets, fixed for the whole experiment.
struct EvalData {
    std::vector<Batch> held_out_text;
    std::vector<PromptAnswer> facts, problems;
    Batch init_check;  // a knowledge batch: logits must not move at initialisation
};

template <class Bk>
Scores measure(loranull::LlamaModel<Bk, float>& model, const EvalData& data, Index text_seq_len) {
    Scores s;
    s.text_bits_per_byte = bits_per_byte(model, data.held_out_text, text_seq_len);
    s.fact_accuracy = exact_match(model, data.facts).accuracy;
    const ExactMatch task = exact_match(model, data.problems);
    s.task_accuracy = task.accuracy;
    s.task_answer_bits = task.answer_bits;
    return s;
}

namespace detail {

template <class Bk>
double max_abs(Bk& b, const loranull::matrix_t<Bk, float>& m) {
    const loranull::HostMatrix<float> h = b.download(m);
    double out = 0;
    for (Index i = 0; i < h.size(); ++i) out = std::max(out, std::abs(double(h.data()[i])));
    return out;
}

/// The knowledge report in double, from the float layer (so that the bound
/// is checked to double rounding, not float's).
template <class Bk>
loranull::KnowledgeReport report_in_double(Bk& b, const loranull::LoraLinear<Bk, float>& layer,
                                           const loranull::matrix_t<Bk, float>& x) {
    loranull::LoraFactors<Bk, double> factors;
    factors.A = b.template convert<double>(layer.A0);
    factors.B = b.template convert<double>(layer.B0);
    factors.W_res = b.template convert<double>(layer.W_res);
    factors.scale = double(layer.scale);
    loranull::LoraLinear<Bk, double> copy(b, std::move(factors), layer.trainable);
    copy.A = b.template convert<double>(layer.A);
    copy.B = b.template convert<double>(layer.B);
    return loranull::knowledge_report(b, copy, b.template convert<double>(x));
}

}  // namespace detail

/// One method at one learning rate and seed, from the pre-trained model.
template <class Bk>
RunResult run(const loranull::LlamaModel<Bk, float>& pretrained, Method method, double lr, std::uint64_t seed,
              const Setup& setup, const Calibration<Bk>& cal, const NullSpaces<Bk>& spaces, const AdditionTask& task,
              const EvalData& data) {
    using loranull::ProjectionKind;
    Bk& b = pretrained.backend();
    RunResult result;
    result.method = method;
    result.rank = uses_adapters(method) ? setup.rank : 0;
    result.lr = lr;
    result.seed = seed;
    const auto start = std::chrono::steady_clock::now();

    loranull::LlamaModel<Bk, float> model = pretrained;
    const Index check_len = setup.text_seq_len;
    const auto logits_before = model.forward(data.init_check.tokens, check_len);
    apply_method(model, method, &cal, &spaces, setup.rank, seed);
    if (uses_adapters(method)) {
        auto change = model.forward(data.init_check.tokens, check_len);
        b.axpy(-1.0f, logits_before, change);
        result.init_logit_change = detail::max_abs(b, change) / detail::max_abs(b, logits_before);
    }
    if (needs_null_space(method)) {
        result.null_space_residual = 0;
        for (std::size_t l = 0; l < model.blocks.size(); ++l)
            for (ProjectionKind p : loranull::all_projections) {
                const auto& a0 = model.blocks[l][p].lora->A0;
                const auto& u = spaces[l][static_cast<std::size_t>(loranull::input_of(p))].basis;
                auto a = b.template convert<double>(a0);
                auto residual = a;
                const auto au = loranull::product(b, a, u);                                          // r x r
                b.gemm(loranull::Op::none, loranull::Op::transpose, -1.0, au, u, 1.0, residual);   // A0 - A0 U U^T
                result.null_space_residual =
                    std::max(result.null_space_residual, double(b.frobenius_norm(residual)) / double(b.frobenius_norm(a)));
            }
    }
    result.trainable = trainable_parameters(model);

    Rng data_rng(seed * 0x9e37'79b9'7f4a'7c15ULL + 17);
    Schedule schedule = setup.schedule;
    schedule.peak_lr = lr;
    char label[64];
    std::snprintf(label, sizeof label, "%s r%ld lr %.4g s%llu", method_name(method), long(result.rank), lr,
                  static_cast<unsigned long long>(seed));
    loranull::io::ProgressBar progress(label, schedule.steps, 0, "steps", setup.quiet);
    result.losses = train(model, schedule, setup.seq_len,
                          [&](long) { return task_batch(task, setup.batch, setup.seq_len, data_rng); }, progress);
    result.diverged = static_cast<long>(result.losses.size()) < schedule.steps;
    if (result.diverged) {
        result.after = {std::numeric_limits<double>::quiet_NaN(), 0.0, 0.0, std::numeric_limits<double>::quiet_NaN()};
        result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        return result;
    }
    result.after = measure(model, data, setup.text_seq_len);
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    if (uses_adapters(method))
        for (std::size_t l = 0; l < model.blocks.size(); ++l)
            for (ProjectionKind p : loranull::all_projections) {
                const auto& layer = *model.blocks[l][p].lora;
                const auto& x = cal.probe[l][static_cast<std::size_t>(loranull::input_of(p))];
                const loranull::KnowledgeReport r = detail::report_in_double(b, layer, x);
                result.layers.push_back({static_cast<Index>(l), loranull::projection_name(p), r.output_change, r.bound,
                                         r.base_output, r.bound_applies});
            }
    return result;
}

}  // namespace experiment
