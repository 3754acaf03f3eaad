#pragma once
// The CUDA backend's NN kernels, layer 2 of 3: each op as a sequence of
// launches of the functors (nn_functors.hpp, nn_attention_functors.hpp) on raw
// pointers, through a `launch(count, functor)` callable, plus the host-side
// preparation some ops need (the embedding backward's grouping by id, AdamW's
// constants). The backend launches on its stream (DeviceLaunch below); the
// host emulation of tests/cuda runs the same sequences with a host loop.
//
// Determinism: no atomics anywhere, every sum runs in a fixed order in one
// thread, so one input gives the same bits on every run. The embedding
// backward groups the token positions by id on the host and adds them in
// position order: the same order as the CPU's loop, hence the same bits.

#include <cmath>
#include <cstdint>
#include <vector>

#include <cuda_runtime_api.h>

#include "loranull/backend/cuda/kernels.hpp"
#include "loranull/backend/cuda/nn_attention_functors.hpp"
#include "loranull/backend/cuda/nn_functors.hpp"
#include "loranull/core/types.hpp"

namespace loranull {

namespace cuda_nn {

// --- host-side preparation ---------------------------------------------------------------------

/// The embedding backward's grouping of token positions by id, flattened as
/// [ids (U) | offsets (U + 1) | positions (T)]: positions of one id in
/// increasing order (a stable counting sort).
inline std::vector<std::int64_t> group_positions_by_id(const std::vector<std::int32_t>& tokens, Index vocab,
                                                       Index& distinct) {
    std::vector<std::int64_t> count(static_cast<std::size_t>(vocab), 0);
    for (std::int32_t id : tokens) ++count[static_cast<std::size_t>(id)];
    std::vector<std::int64_t> ids, offsets{0};
    for (Index id = 0; id < vocab; ++id)
        if (count[static_cast<std::size_t>(id)] > 0) {
            ids.push_back(id);
            offsets.push_back(offsets.back() + count[static_cast<std::size_t>(id)]);
        }
    // start of each id's group, then fill in increasing position order
    std::vector<std::int64_t> next(static_cast<std::size_t>(vocab), 0);
    for (std::size_t u = 0; u < ids.size(); ++u) next[static_cast<std::size_t>(ids[u])] = offsets[u];
    std::vector<std::int64_t> positions(tokens.size());
    for (std::size_t t = 0; t < tokens.size(); ++t)
        positions[static_cast<std::size_t>(next[static_cast<std::size_t>(tokens[t])]++)] = static_cast<std::int64_t>(t);
    distinct = static_cast<Index>(ids.size());
    std::vector<std::int64_t> flat;
    flat.reserve(ids.size() * 2 + 1 + positions.size());
    flat.insert(flat.end(), ids.begin(), ids.end());
    flat.insert(flat.end(), offsets.begin(), offsets.end());
    flat.insert(flat.end(), positions.begin(), positions.end());
    return flat;
}

template <class T>
AdamWConstants<T> adamw_constants(double lr, double beta1, double beta2, double eps, double weight_decay, long step) {
    // As the CPU: the bias corrections in double, every constant rounded to T once.
    const double c1 = 1 - std::pow(beta1, double(step)), c2 = 1 - std::pow(beta2, double(step));
    return {T(beta1), T(1 - beta1), T(beta2), T(1 - beta2), T(c1), T(c2), T(lr), T(eps), T(weight_decay)};
}

// --- each op as launches on raw pointers --------------------------------------------------------
//
// `launch(count, functor)` runs functor(k) for every k in [0, count), each
// launch after the previous one has finished (one stream, or a host loop).
// Sizes have been checked by the caller; pointers are in the launcher's memory.

namespace nn_raw {

template <class Launch, class T>
void embedding_forward(const Launch& launch, T* out, const T* table, const std::int32_t* tokens, Index d, Index count) {
    launch(d * count, EmbeddingGather<T>{out, table, tokens, d});
}

/// grouped: the device copy of group_positions_by_id's result, `distinct` ids.
template <class Launch, class T>
void embedding_backward(const Launch& launch, T* d_table, const T* dx, const std::int64_t* grouped, Index distinct,
                        Index d) {
    launch(d * distinct, EmbeddingScatter<T>{d_table, dx, grouped, grouped + distinct, grouped + 2 * distinct + 1, d});
}

template <class Launch, class T>
void rmsnorm_forward(const Launch& launch, T* y, T* rstd, const T* x, const T* gain, T eps, Index d, Index tokens) {
    launch(tokens, RmsnormStats<T>{rstd, x, d, eps});
    launch(d * tokens, RmsnormApply<T>{y, x, gain, rstd, d});
}

/// scratch: `tokens` entries.
template <class Launch, class T>
void rmsnorm_backward(const Launch& launch, T* dx, T* d_gain, T* scratch, const T* dy, const T* x, const T* gain,
                      const T* rstd, Index d, Index tokens) {
    launch(tokens, RmsnormBackwardDot<T>{scratch, dy, x, gain, d});
    launch(d * tokens, RmsnormBackwardDx<T>{dx, dy, x, gain, rstd, scratch, d});
    launch(d, RmsnormBackwardGain<T>{d_gain, dy, x, rstd, d, tokens});
}

template <class Launch, class T>
void rope(const Launch& launch, T* x, Index heads, Index head_dim, Index seq, Index tokens, const double* frequencies,
          int direction) {
    launch(heads * (head_dim / 2) * tokens, Rope<T>{x, heads, head_dim, seq, frequencies, direction});
}

template <class T>
T inverse_sqrt_head_dim(Index head_dim) {
    return T(1) / sqrt_of(T(head_dim));  // as the CPU: T(1) / std::sqrt(T(hd))
}

template <class Launch, class T>
void attention_forward(const Launch& launch, T* out, T* probs, const T* q, const T* k, const T* v,
                       const AttentionDims& a) {
    const T inv_sqrt = inverse_sqrt_head_dim<T>(a.head_dim);
    launch(a.seq * a.prob_columns(), AttentionScores<T>{probs, q, k, a, inv_sqrt});
    launch(a.prob_columns(), CausalSoftmax<T>{probs, a.seq});
    launch(a.q_rows() * a.seq * a.batch, AttentionOutput<T>{out, v, probs, a});
}

/// ds: scratch of the probs layout (seq x prob_columns).
template <class Launch, class T>
void attention_backward(const Launch& launch, T* dq, T* dk, T* dv, T* ds, const T* d_out, const T* q, const T* k,
                        const T* v, const T* probs, const AttentionDims& a) {
    const T inv_sqrt = inverse_sqrt_head_dim<T>(a.head_dim);
    launch(a.seq * a.prob_columns(), AttentionDp<T>{ds, v, d_out, a});
    launch(a.prob_columns(), CausalSoftmaxBackward<T>{ds, probs, a.seq});
    launch(a.q_rows() * a.seq * a.batch, AttentionDq<T>{dq, k, ds, a, inv_sqrt});
    launch(a.kv_rows() * a.seq * a.batch, AttentionDkDv<T>{dk, dv, q, d_out, probs, ds, a, inv_sqrt});
}

template <class Launch, class T>
void swiglu_forward(const Launch& launch, T* h, const T* gate, const T* up, Index count) {
    launch(count, SwigluForward<T>{h, gate, up});
}

template <class Launch, class T>
void swiglu_backward(const Launch& launch, T* d_gate, T* d_up, const T* dh, const T* gate, const T* up, Index count) {
    launch(count, SwigluBackward<T>{d_gate, d_up, dh, gate, up});
}

/// loss: `tokens` doubles, one per token (summed by the caller, in order).
template <class Launch, class T>
void cross_entropy_forward(const Launch& launch, T* probs, double* loss, const T* logits, const std::int32_t* targets,
                           Index vocab, Index tokens) {
    launch(tokens, CrossEntropyColumns<T>{probs, loss, logits, targets, vocab});
}

/// scored: the number of targets that are not ignore_target (>= 1).
template <class Launch, class T>
void cross_entropy_backward(const Launch& launch, T* d, const T* probs, const std::int32_t* targets, Index vocab,
                            Index tokens, Index scored) {
    launch(vocab * tokens, CrossEntropyBackward<T>{d, probs, targets, vocab, scored});
}

template <class Launch, class T>
void adamw_update(const Launch& launch, T* param, T* m, T* v, const T* grad, const AdamWConstants<T>& c, Index count) {
    launch(count, AdamWUpdate<T>{param, m, v, grad, c});
}

}  // namespace nn_raw

/// Launches on a CUDA stream (the grid-stride launcher of kernels.hpp).
struct DeviceLaunch {
    cudaStream_t stream;
    const char* where;
    template <class F>
    void operator()(Index count, const F& f) const {
        cuda_detail::for_each_index(count, f, stream, where);
    }
};

}  // namespace cuda_nn

}  // namespace loranull
