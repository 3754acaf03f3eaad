#pragma once
// Parity case, part 5: the whole LLaMA model on both backends. One LlamaModel
// run, written once and generic over the backend, so that both halves execute
// exactly the same sequence of calls on the same weights:
//
//   build the model from a ModelSpec (config, every parameter by its Hugging
//   Face name, LoRA adapters given as explicit factors), then
//   logits = forward(tokens); loss(); backward()  -> every parameter gradient;
//   `steps` AdamW steps (zero_grad, loss, backward, step) -> losses, gradient
//   norms and the parameters after.
//
// Model: 2 blocks, dim 16, 4 query heads on 2 kv heads (GQA), hidden 24,
// vocab 37, batch 2 of 13 tokens; tied and untied embeddings; LoRA adapters
// (rank 3, scale 2, B != 0 so every factor matters) on q of block 0 (A and B
// train), v of block 1 (A only) and down of block 1 (B only, LoRA-Null v2's
// regime), with full fine-tuning of everything else, or LoRA-only training.
//
// Tolerances, relative (Frobenius for matrices): 1e-4 in float, 1e-10 in
// double. Each kernel agrees to a few hundred eps (parity_cases_nn.hpp); a
// forward and backward pass chains about 20 of them through two blocks of
// well-conditioned random weights (scores and logits of order 0.1, no
// saturated softmax), so the errors add to some 1e3 eps in the worst case:
// 1e-4 is ~800 eps(float). In double the same reasoning gives ~1e-13; 1e-10
// leaves room and still sits three orders below float's eps, so a float
// rounding anywhere in a double path (a float constant, expf on a double)
// fails the test. Three AdamW steps with lr 1e-3 move the parameters by
// ~lr, much less than their size, and the update m / (sqrt(v) + eps) is a
// smooth function of well-separated-from-zero gradients here.
//
// Generic code only (llama/, no Eigen, no CUDA): it compiles under g++ and nvcc.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <loranull/core/error.hpp>
#include <loranull/core/host_matrix.hpp>
#include <loranull/llama/calibration.hpp>
#include <loranull/llama/config.hpp>
#include <loranull/llama/model.hpp>
#include <loranull/llama/train.hpp>

#include "parity_inputs.hpp"

namespace parity {


/// A LoRA adapter in place of one projection: W = W_res + scale B A.
template <class T>
struct AdapterSpec {
    loranull::Index layer = 0;
    loranull::ProjectionKind projection = loranull::ProjectionKind::q;
    loranull::HostMatrix<T> A, B, W_res;  // r x n, m x r, m x n
    T scale = 1;
    loranull::Trainable trainable = loranull::Trainable::both;
};

template <class T>
struct ModelSpec {
    loranull::LlamaConfig config;
    bool full_finetune = false;
    /// Every dense parameter by its Hugging Face name ("model.layers.0.self_attn.q_proj.weight", ...);
    /// the LoRA factors come from `adapters`.
    std::map<std::string, loranull::HostMatrix<T>> values;
    std::vector<AdapterSpec<T>> adapters;
};

struct TrainingSpec {
    std::vector<std::int32_t> tokens, targets;
    loranull::Index seq_len = 1;
    int steps = 0;
    double lr = 1e-3;
    loranull::AdamWConfig adamw;
};

template <class T>
struct ModelRun {
    loranull::HostMatrix<T> logits;                 // vocab x T, from forward()
    double loss = 0;                                // loss() before any step
    std::vector<std::string> names;                 // parameters() order
    std::vector<loranull::HostMatrix<T>> grads;     // after the first backward(); 0 x 0 when frozen
    std::vector<double> step_losses, grad_norms;    // per AdamW step (the loss before it)
    std::vector<loranull::HostMatrix<T>> values_after;  // parameters after the steps
};

template <class Bk, class T>
ModelRun<T> run_model(Bk& b, const ModelSpec<T>& spec, const TrainingSpec& training) {
    using namespace loranull;
    const char* where = "run_model";
    LlamaModel<Bk, T> model(b, spec.config);
    model.set_full_finetune(spec.full_finetune);
    for (const auto& a : spec.adapters) {
        LoraFactors<Bk, T> factors{b.upload(a.A), b.upload(a.B), b.upload(a.W_res), a.scale, "parity"};
        model.blocks[static_cast<std::size_t>(a.layer)][a.projection].attach(b, std::move(factors), a.trainable);
    }
    for (auto& p : model.parameters()) {
        const auto found = spec.values.find(p.name);
        if (found == spec.values.end()) {
            require(p.name.ends_with(".lora_A") || p.name.ends_with(".lora_B"), where, "no value for ", p.name);
            continue;  // set by attach
        }
        require(found->second.rows() == p.value->rows() && found->second.cols() == p.value->cols(), where, p.name,
                " is ", shape_string(p.value->rows(), p.value->cols()), ", the value given is ",
                shape_string(found->second.rows(), found->second.cols()));
        *p.value = b.upload(found->second);
    }
    ModelRun<T> run;
    run.logits = b.download(model.forward(training.tokens, training.seq_len));
    model.zero_grad();
    run.loss = model.loss(training.tokens, training.targets, training.seq_len);
    model.backward();
    for (auto& p : model.parameters()) {
        run.names.push_back(p.name);
        run.grads.push_back(p.grad ? b.download(*p.grad) : HostMatrix<T>());
    }
    AdamW<Bk, T> optimizer(training.adamw);
    for (int s = 0; s < training.steps; ++s) {
        model.zero_grad();
        run.step_losses.push_back(model.loss(training.tokens, training.targets, training.seq_len));
        model.backward();
        run.grad_norms.push_back(optimizer.step(b, model.parameters(), training.lr));
    }
    for (auto& p : model.parameters()) run.values_after.push_back(b.download(*p.value));
    return run;
}


struct LlamaModelRun {
    static constexpr const char* title =
        "LlamaModel on the GPU matches the CPU: logits, loss, every gradient, three AdamW steps";
    template <class T>
    struct Item {
        std::string label;
        ModelSpec<T> spec;
        TrainingSpec training;
    };
    template <class T>
    using Result = ModelRun<T>;

    /// `family`: the keys LLaMA 3.2 / Qwen2 / Mistral bring (head_dim apart from
    /// dim / heads, biases on every projection, llama3 rope scaling).
    static loranull::LlamaConfig config(bool tied, bool family) {
        loranull::LlamaConfig c;
        c.dim = 16;
        c.n_layers = 2;
        c.n_heads = 4;
        c.n_kv_heads = 2;
        c.hidden_dim = 24;
        c.vocab_size = 37;
        c.max_seq_len = 16;
        c.tied_embeddings = tied;
        if (family) {
            c.head_size = 6;  // q: 24 x 16, o: 16 x 24
            c.biases = loranull::BiasScheme::attention_and_mlp;
            c.rope_theta = 10000;
            c.rope_scaling = {loranull::RopeScaling::Type::llama3, 8.0, 1.0, 4.0, 256};
        }
        return c;
    }

    /// Weights from init_random on the reference backend, norm gains moved off
    /// 1, and (when `adapters`) three LoRA adapters with W_res = W - s B A.
    template <class T, class Bk>
    static ModelSpec<T> spec(Bk& b, bool tied, bool full_finetune, bool adapters, bool family) {
        using namespace loranull;
        ModelSpec<T> spec;
        spec.config = config(tied, family);
        spec.full_finetune = full_finetune;
        LlamaModel<Bk, T> reference(b, spec.config);
        reference.init_random(tied ? 21 : 22);
        std::uint64_t seed = 100;
        for (auto& p : reference.parameters()) {
            HostMatrix<T> value = b.download(*p.value);
            if (p.name.find("norm.weight") != std::string::npos) {
                const HostMatrix<T> noise = gaussian<T>(value.rows(), value.cols(), ++seed, 0.3);
                for (Index i = 0; i < value.size(); ++i) value.data()[i] += noise.data()[i];
            }
            spec.values[p.name] = value;
        }
        if (!adapters) return spec;
        struct Where {
            Index layer;
            ProjectionKind kind;
            Trainable trainable;
        };
        for (Where w : {Where{0, ProjectionKind::q, Trainable::both}, Where{1, ProjectionKind::v, Trainable::A_only},
                        Where{1, ProjectionKind::down, Trainable::B_only}}) {
            const std::string name = "model.layers." + std::to_string(w.layer) + "." + projection_path(w.kind) + ".weight";
            auto w_res = b.upload(spec.values.at(name));
            spec.values.erase(name);
            const Index r = 3;
            AdapterSpec<T> a;
            a.layer = w.layer;
            a.projection = w.kind;
            a.trainable = w.trainable;
            a.scale = T(2);
            a.A = gaussian<T>(r, w_res.cols(), ++seed, 0.3);
            a.B = gaussian<T>(w_res.rows(), r, ++seed, 0.3);
            b.gemm(Op::none, Op::none, -a.scale, b.upload(a.B), b.upload(a.A), T(1), w_res);  // W - s B A
            a.W_res = b.download(w_res);
            spec.adapters.push_back(a);
        }
        return spec;
    }

    template <class T, class Bk>
    static std::vector<Item<T>> items(Bk& b) {
        std::vector<Item<T>> out;
        struct Variant {
            bool tied, full_finetune, adapters, family = false;
        };
        for (Variant v : {Variant{false, true, true}, Variant{true, true, true}, Variant{false, false, true},
                          Variant{true, true, false}, Variant{false, false, true, true}}) {
            Item<T> item{std::string(v.tied ? "tied" : "untied") + (v.full_finetune ? ", full fine-tuning" : ", LoRA only") +
                             (v.adapters ? ", adapters" : "") + (v.family ? ", head_dim 6, biases, llama3 rope" : ""),
                         spec<T>(b, v.tied, v.full_finetune, v.adapters, v.family),
                         {}};
            item.training.seq_len = 13;
            item.training.tokens = random_tokens(2 * 13, item.spec.config.vocab_size, 31);
            item.training.targets = random_tokens(2 * 13, item.spec.config.vocab_size, 32);
            item.training.steps = 3;
            item.training.lr = 1e-3;
            item.training.adamw.weight_decay = 0.1;
            out.push_back(item);
        }
        return out;
    }
    template <class T, class Bk>
    static Result<T> run(Bk& b, const Item<T>& in) {
        return run_model(b, in.spec, in.training);
    }
    template <class T, class Check>
    static void check(Check& c, const Item<T>&, const Result<T>& got, const Result<T>& expected) {
        const double tol = std::is_same_v<T, float> ? 1e-4 : 1e-10;
        const auto scalar_error = [](double g, double e) { return std::abs(g - e) / std::max(std::abs(e), 1e-300); };
        const auto matrix_error = [&](const HostMatrix<T>& g, const HostMatrix<T>& e) {
            return e.size() == 0 && g.size() == 0 ? 0.0 : c.relative(g, e);
        };
        c.below("logits", matrix_error(got.logits, expected.logits), tol);
        c.below("loss", scalar_error(got.loss, expected.loss), tol);
        c.require("the same parameters", got.names == expected.names);
        Index trained = 0;
        for (std::size_t i = 0; i < got.names.size(); ++i) {
            c.that(got.names[i].c_str(), got.grads[i].size() == expected.grads[i].size());  // the same ones train
            if (expected.grads[i].size() > 0) ++trained;
            c.below(got.names[i].c_str(), matrix_error(got.grads[i], expected.grads[i]), tol);
            c.below(got.names[i].c_str(), matrix_error(got.values_after[i], expected.values_after[i]), tol);
        }
        c.that("something trains", trained > 0);
        c.require("as many steps", got.step_losses.size() == expected.step_losses.size());
        for (std::size_t s = 0; s < got.step_losses.size(); ++s) {
            c.below("step loss", scalar_error(got.step_losses[s], expected.step_losses[s]), tol);
            c.below("gradient norm", scalar_error(got.grad_norms[s], expected.grad_norms[s]), tol);
        }
        c.that("the steps did train", expected.step_losses.back() < expected.step_losses.front());
    }
};

/// The builder's block forward (loranull-build): a block whose q/k/v and
/// gate/up run as one stacked product each (fuse_products), its four input
/// covariances accumulated as the builder does (fp32 panels for float
/// activations), and the output hook's ||W X||^2 per projection.
struct FusedBlockCalibration {
    static constexpr const char* title =
        "fused block forward with its calibration on the GPU matches the CPU: output, covariances, output energies";
    template <class T>
    struct Item {
        std::string label;
        ModelSpec<T> spec;
        std::vector<std::int32_t> tokens;
        loranull::Index seq_len = 13;
        loranull::Normalisation normalisation = loranull::Normalisation::plain;
    };
    template <class T>
    struct Result {
        loranull::HostMatrix<T> output;
        std::vector<loranull::HostMatrix<double>> covariances;  // by input slot
        std::vector<double> output_energy;                     // by projection
    };
    template <class T, class Bk>
    static std::vector<Item<T>> items(Bk& b) {
        std::vector<Item<T>> out;
        for (bool family : {false, true})
            for (auto normalisation : {loranull::Normalisation::plain, loranull::Normalisation::reference}) {
                Item<T> item{std::string(family ? "head_dim 6, biases" : "plain block") +
                                 (normalisation == loranull::Normalisation::plain ? ", plain" : ", reference"),
                             LlamaModelRun::spec<T>(b, false, false, false, family), {}, 13, normalisation};
                item.tokens = random_tokens(2 * 13, item.spec.config.vocab_size, 33);
                out.push_back(item);
            }
        return out;
    }
    template <class T, class Bk>
    static Result<T> run(Bk& b, const Item<T>& in) {
        using namespace loranull;
        using Model = LlamaModel<Bk, T>;
        Model model(b, in.spec.config);
        for (auto& p : model.parameters()) *p.value = b.upload(in.spec.values.at(p.name));
        typename Model::Block block = model.blocks[0];
        Model::fuse_products(b, block);
        BlockCalibration<Bk, double> cal(b, in.spec.config, in.normalisation, "parity", Accumulation::fp32_panels);
        cal.expect_outputs();
        const auto x = b.embedding_forward(model.embed, in.tokens);
        const auto y = Model::block_forward(
            b, in.spec.config, block, 0, x, in.seq_len,
            [&](Index, LinearInput input, const matrix_t<Bk, T>& a) { cal.add(input, a, in.seq_len); },
            [&](Index, ProjectionKind kind, const matrix_t<Bk, T>& out) { cal.add_output(kind, out, in.seq_len); });
        Result<T> r;
        r.output = b.download(y);
        for (LinearInput input : all_inputs) r.covariances.push_back(b.download(cal.covariance(input).matrix()));
        for (ProjectionKind kind : all_projections) r.output_energy.push_back(cal.output_energy(kind));
        return r;
    }
    template <class T, class Check>
    static void check(Check& c, const Item<T>&, const Result<T>& got, const Result<T>& expected) {
        const double tol = std::is_same_v<T, float> ? 1e-4 : 1e-10;  // as LlamaModelRun: a chain of ~10 kernels
        c.below("block output", c.relative(got.output, expected.output), tol);
        c.require("four covariances", got.covariances.size() == 4);
        for (std::size_t i = 0; i < 4; ++i) c.below("covariance", c.relative(got.covariances[i], expected.covariances[i]), tol);
        for (std::size_t k = 0; k < 7; ++k)
            c.below("output energy", std::abs(got.output_energy[k] - expected.output_energy[k]) /
                                         std::max(std::abs(expected.output_energy[k]), 1e-300), tol);
    }
};

}  // namespace parity
