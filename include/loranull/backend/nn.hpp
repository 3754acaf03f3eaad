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
#include "loranull/core/error.hpp"

namespace loranull {

/// Grouped-query attention geometry: T = batch * seq_len tokens, token t at
/// position t mod seq_len; query head h reads kv head h / (heads / kv_heads).
/// A cross-entropy target that scores nothing (PyTorch's ignore_index): the
/// prompt of a supervised example, padding. The mean runs over the rest.
inline constexpr std::int32_t ignore_target = -1;

/// How many targets are scored (the divisor of the mean loss), checking that
/// each is in [0, vocab) or ignore_target and that at least one is scored.
/// Every backend's cross-entropy calls it, so all agree on the contract.
inline Index scored_targets(const std::vector<std::int32_t>& targets, Index vocab, const char* where) {
    Index scored = 0;
    for (std::size_t t = 0; t < targets.size(); ++t) {
        const std::int32_t y = targets[t];
        require(y == ignore_target || (y >= 0 && y < vocab), where, "target ", y, " at position ", t,
                " is outside the vocabulary of ", vocab, " (and is not ignore_target = -1)");
        scored += y == ignore_target ? 0 : 1;
    }
    require(scored > 0, where, "every one of the ", targets.size(), " targets is ignore_target: nothing to score");
    return scored;
}

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
    // Mean softmax cross-entropy over the scored targets (probabilities saved)
    // and dlogits; a target equal to ignore_target is not scored (0 gradient).
    { b.cross_entropy_forward(a, tokens, out) } -> std::convertible_to<double>;
    { b.cross_entropy_backward(a, tokens) } -> std::same_as<matrix_t<B, T>>;
    // One AdamW step (decoupled weight decay) on one parameter.
    b.adamw_update(out, a, out, out, x, x, x, x, x, step);
};

template <class B>
concept NnBackend = NnBackendFor<B, float> && NnBackendFor<B, double>;

}  // namespace loranull
