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
#include "loranull/core/types.hpp"

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

template <class Bk, class T>
concept NnBackendFor = BackendFor<Bk, T> && requires(Bk& b, matrix_t<Bk, T>& out, const matrix_t<Bk, T>& a,
                                                    const std::vector<std::int32_t>& tokens, const AttentionShape& shape,
                                                    T eps, double x, long step, Index i,
                                                    const std::vector<double>& frequencies) {
    // X(:, t) = table(:, tokens[t]) and its scatter-add backward.
    { b.embedding_forward(a, tokens) } -> std::same_as<matrix_t<Bk, T>>;
    b.embedding_backward(out, a, tokens);
    // y = x rstd g, rstd = 1 / sqrt(mean(x^2) + eps) saved; backward returns dx, accumulates dg.
    { b.rmsnorm_forward(a, a, eps, out) } -> std::same_as<matrix_t<Bk, T>>;
    { b.rmsnorm_backward(a, a, a, a, out) } -> std::same_as<matrix_t<Bk, T>>;
    // Rotary embedding in place (HF rotate-half) at the head_dim / 2 inverse
    // frequencies given (llama/rope.hpp); direction -1 is its backward.
    b.rope(out, i, i, i, frequencies, 1);
    // Causal grouped-query attention; probabilities saved for the backward.
    { b.attention_forward(a, a, a, shape, out) } -> std::same_as<matrix_t<Bk, T>>;
    b.attention_backward(a, a, a, a, a, shape, out, out, out);
    // h = silu(gate) * up and its backward.
    { b.swiglu_forward(a, a) } -> std::same_as<matrix_t<Bk, T>>;
    b.swiglu_backward(a, a, a, out, out);
    // Mean softmax cross-entropy over the scored targets (probabilities saved)
    // and dlogits; a target equal to ignore_target is not scored (0 gradient).
    { b.cross_entropy_forward(a, tokens, out) } -> std::convertible_to<double>;
    { b.cross_entropy_backward(a, tokens) } -> std::same_as<matrix_t<Bk, T>>;
    // One AdamW step (decoupled weight decay) on one parameter.
    b.adamw_update(out, a, out, out, x, x, x, x, x, step);
};

template <class Bk>
concept NnBackend = NnBackendFor<Bk, float> && NnBackendFor<Bk, double>;

// --- argument checks shared by every backend -----------------------------------
//
// One statement of each kernel's shape contract, so that the same mistake reads
// the same on every backend. `where` names the backend's entry ("embedding_forward"
// on the CPU, "CudaBackend::embedding_forward" on the GPU, as their messages
// always did); M is any matrix type with rows() and cols().

/// Every token id in [0, vocab): the first offender is named with its position.
inline void check_token_ids(const std::vector<std::int32_t>& tokens, Index vocab, const char* where) {
    for (std::size_t t = 0; t < tokens.size(); ++t)
        require(tokens[t] >= 0 && tokens[t] < vocab, where, "token id ", tokens[t], " at position ", t,
                " is outside the vocabulary of ", vocab);
}

/// The embedding backward: dX (d x T) for T tokens into d_table (d x vocab).
template <class M>
void check_embedding_backward(const M& d_table, const M& dx, const std::vector<std::int32_t>& tokens,
                              const char* where) {
    require(dx.cols() == static_cast<Index>(tokens.size()) && dx.rows() == d_table.rows(), where, "dX is ",
            shape_string(dx.rows(), dx.cols()), " for ", tokens.size(), " tokens");
}

/// RMSNorm's gain is d x 1 for a d x T input.
template <class M>
void check_rmsnorm_gain(const M& x, const M& gain, const char* where) {
    require(gain.rows() == x.rows() && gain.cols() == 1, where, "gain is ", shape_string(gain.rows(), gain.cols()),
            ", expected ", x.rows(), " x 1");
}

/// RoPE on x ((heads hd) x T): hd even, T a multiple of seq_len. A backend
/// whose kernels index by hd / 2 and by head (the GPU's) also needs
/// heads >= 1 and hd >= 2 (`nonempty_heads`); the CPU's loops accept empty
/// heads, and keep doing so.
template <class M>
void check_rope(const M& x, Index heads, Index head_dim, Index seq_len, const std::vector<double>& frequencies,
                const char* where, bool nonempty_heads = false) {
    require((!nonempty_heads || (heads >= 1 && head_dim >= 2)) && x.rows() == heads * head_dim &&
                head_dim % 2 == 0 && seq_len > 0 && x.cols() % seq_len == 0,
            where, "x is ", shape_string(x.rows(), x.cols()), " for ", heads, " heads of ", head_dim,
            " (even) and sequences of ", seq_len);
    require(static_cast<Index>(frequencies.size()) == head_dim / 2, where, frequencies.size(),
            " rotary frequencies for head_dim ", head_dim, " (need head_dim / 2)");
}

/// Attention: q (heads hd) x T, k and v (kv_heads hd) x T, heads a multiple of
/// kv_heads, T a multiple of seq_len.
template <class M>
void check_attention(const M& q, const M& k, const M& v, const AttentionShape& a, const char* where) {
    require(a.heads >= 1 && a.kv_heads >= 1 && a.heads % a.kv_heads == 0 && a.head_dim >= 1 && a.seq_len >= 1, where,
            "heads ", a.heads, " not a multiple of kv heads ", a.kv_heads);
    require(q.rows() == a.heads * a.head_dim && k.rows() == a.kv_heads * a.head_dim && v.rows() == k.rows() &&
                k.cols() == q.cols() && v.cols() == q.cols() && q.cols() % a.seq_len == 0,
            where, "q is ", shape_string(q.rows(), q.cols()), ", k ", shape_string(k.rows(), k.cols()), ", v ",
            shape_string(v.rows(), v.cols()), " for ", a.heads, "/", a.kv_heads, " heads of ", a.head_dim,
            " and sequences of ", a.seq_len);
}

/// SwiGLU's gate and up have one shape.
template <class M>
void check_swiglu(const M& gate, const M& up, const char* where) {
    require(gate.rows() == up.rows() && gate.cols() == up.cols(), where, "gate is ",
            shape_string(gate.rows(), gate.cols()), ", up is ", shape_string(up.rows(), up.cols()));
}

/// Cross-entropy: one column of `scores` (logits or probs, V x T) per target,
/// T >= 1. `what` is "logits" or "probs". A backend that cannot reduce over an
/// empty vocabulary (the GPU's) also needs V >= 1 (`nonempty_vocab`); on the CPU
/// scored_targets rejects every target of an empty vocabulary instead.
template <class M>
void check_cross_entropy(const M& scores, const std::vector<std::int32_t>& targets, const char* what,
                         const char* where, bool nonempty_vocab = false) {
    require(scores.cols() == static_cast<Index>(targets.size()) && scores.cols() > 0 &&
                (!nonempty_vocab || scores.rows() > 0),
            where, what, " are ", shape_string(scores.rows(), scores.cols()), " for ", targets.size(), " targets");
}

/// AdamW: grad, m and v match the parameter.
template <class M>
void check_adamw(const M& param, const M& grad, const M& m, const M& v, const char* where) {
    require(grad.rows() == param.rows() && grad.cols() == param.cols() && m.size() == param.size() &&
                v.size() == param.size(),
            where, "param is ", shape_string(param.rows(), param.cols()), ", grad is ",
            shape_string(grad.rows(), grad.cols()));
}

}  // namespace loranull
