#pragma once
// The neural-network kernels a backend provides to run the LLaMA model of
// llama/: forward and backward of every op, and AdamW. Stated as the concept
// NnBackend on top of Backend (a linear-algebra-only backend need not provide
// them). The CPU versions (backend/cpu/nn_kernels.hpp) say each equation and
// are the reference the GPU kernels are checked against.
//
// Token ids travel as host std::vector<std::int32_t> (a backend uploads them):
// they are T integers next to d x T activations.

#include <concepts>
#include <cstdint>
#include <vector>

#include "loranull/backend/backend.hpp"

namespace loranull {

/// Grouped-query attention geometry: T = batch * seq_len tokens, token t at
/// position t mod seq_len; query head h reads kv head h / (heads / kv_heads).
struct AttentionShape {
    Index heads = 1;
    Index kv_heads = 1;
    Index head_dim = 1;
    Index seq_len = 1;
};

template <class B, class T>
concept NnBackendFor = BackendFor<B, T> && requires(B& b, matrix_t<B, T>& out, const matrix_t<B, T>& a,
                                                    const std::vector<std::int32_t>& tokens, const AttentionShape& shape,
                                                    T eps, double x, long step, Index i) {
    // X(:, t) = table(:, tokens[t]) and its scatter-add backward.
    { b.embedding_forward(a, tokens) } -> std::same_as<matrix_t<B, T>>;
    b.embedding_backward(out, a, tokens);
    // y = x rstd g, rstd = 1 / sqrt(mean(x^2) + eps) saved; backward returns dx, accumulates dg.
    { b.rmsnorm_forward(a, a, eps, out) } -> std::same_as<matrix_t<B, T>>;
    { b.rmsnorm_backward(a, a, a, a, out) } -> std::same_as<matrix_t<B, T>>;
    // Rotary embedding in place (HF rotate-half); direction -1 is its backward.
    b.rope(out, i, i, i, x, 1);
    // Causal grouped-query attention; probabilities saved for the backward.
    { b.attention_forward(a, a, a, shape, out) } -> std::same_as<matrix_t<B, T>>;
    b.attention_backward(a, a, a, a, a, shape, out, out, out);
    // h = silu(gate) * up and its backward.
    { b.swiglu_forward(a, a) } -> std::same_as<matrix_t<B, T>>;
    b.swiglu_backward(a, a, a, out, out);
    // Mean softmax cross-entropy (probabilities saved) and dlogits.
    { b.cross_entropy_forward(a, tokens, out) } -> std::convertible_to<double>;
    { b.cross_entropy_backward(a, tokens) } -> std::same_as<matrix_t<B, T>>;
    // One AdamW step (decoupled weight decay) on one parameter.
    b.adamw_update(out, a, out, out, x, x, x, x, x, step);
};

template <class B>
concept NnBackend = NnBackendFor<B, float> && NnBackendFor<B, double>;

}  // namespace loranull
