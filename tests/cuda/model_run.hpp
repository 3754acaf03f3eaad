#pragma once
// One LlamaModel run, written once and generic over the backend, so that the
// CPU (test_cuda_nn_parity.cpp) and the GPU (gpu_nn_ops.cu) execute exactly
// the same sequence of calls on the same weights:
//
//   build the model from a ModelSpec (config, every parameter by its Hugging
//   Face name, LoRA adapters given as explicit factors), then
//   logits = forward(tokens); loss(); backward()  -> every parameter gradient;
//   `steps` AdamW steps (zero_grad, loss, backward, step) -> losses, gradient
//   norms and the parameters after.
//
// Generic code only (llama/, no Eigen, no CUDA): it compiles under g++ and nvcc.

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <loranull/core/error.hpp>
#include <loranull/core/host_matrix.hpp>
#include <loranull/llama/config.hpp>
#include <loranull/llama/model.hpp>
#include <loranull/llama/train.hpp>

namespace gpu::nn {

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

}  // namespace gpu::nn
