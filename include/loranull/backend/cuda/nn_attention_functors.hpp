#pragma once
// The CUDA backend's NN kernels, layer 1 of 3 (continued): the per-index
// functors of causal grouped-query attention, forward and backward. Same rules
// as nn_functors.hpp (one index per call, no atomics, no shared memory); the
// probs layout is seq x (seq * heads * batch), column (b * heads + h) * seq + j
// holding P[key, query j], 0 for key > j.

#include "loranull/backend/cuda/nn_functors.hpp"

namespace loranull {

namespace cuda_nn {

// --- causal grouped-query attention ------------------------------------------------------

/// Which (key, query j, head h, sequence b) an entry k of the probs layout is:
/// k = key + seq * column, column = j + seq (h + heads b).
struct ProbEntry {
    Index key, column, j, h, b;
    __host__ __device__ ProbEntry(Index k, const AttentionDims& a) {
        key = k % a.seq;
        column = k / a.seq;
        j = column % a.seq;
        h = (column / a.seq) % a.heads;
        b = column / (a.seq * a.heads);
    }
};

/// scores(key, column) = K_kv(:, key) . Q_h(:, j) / sqrt(hd) for key <= j, else 0.
template <class T>
struct AttentionScores {
    T* probs;
    const T* q;
    const T* k;
    AttentionDims a;
    T inv_sqrt;
    __host__ __device__ void operator()(Index idx) const {
        const ProbEntry e(idx, a);
        if (e.key > e.j) {
            probs[idx] = T(0);
            return;
        }
        const Index kv = e.h / a.group();
        const T* qj = q + (e.b * a.seq + e.j) * a.q_rows() + e.h * a.head_dim;
        const T* kk = k + (e.b * a.seq + e.key) * a.kv_rows() + kv * a.head_dim;
        T dot = 0;
        for (Index d = 0; d < a.head_dim; ++d) dot += kk[d] * qj[d];
        probs[idx] = dot * inv_sqrt;
    }
};

/// In one probs column (query j): softmax over keys 0..j, in place (keys > j
/// stay 0). k = column.
template <class T>
struct CausalSoftmax {
    T* probs;
    Index seq;
    __host__ __device__ void operator()(Index column) const {
        T* p = probs + column * seq;
        const Index j = column % seq;
        T max = p[0];
        for (Index key = 1; key <= j; ++key) max = max_of(max, p[key]);
        T sum = 0;
        for (Index key = 0; key <= j; ++key) {
            p[key] = exp_of(p[key] - max);
            sum += p[key];
        }
        for (Index key = 0; key <= j; ++key) p[key] /= sum;
    }
};

/// Which (dim d, head h, token t = b seq + j) an entry k of a (heads hd) x T
/// matrix is: k = d + hd (h + heads t).
struct HeadEntry {
    Index d, h, t, b, j;
    __host__ __device__ HeadEntry(Index k, Index heads, Index head_dim, Index seq) {
        d = k % head_dim;
        const Index rest = k / head_dim;
        h = rest % heads;
        t = rest / heads;
        b = t / seq;
        j = t % seq;
    }
};

/// out(h hd + d, t) = sum_{key <= j} V_kv(d, key) P(key, column); k indexes out.
template <class T>
struct AttentionOutput {
    T* out;
    const T* v;
    const T* probs;
    AttentionDims a;
    __host__ __device__ void operator()(Index k) const {
        const HeadEntry e(k, a.heads, a.head_dim, a.seq);
        const Index kv = e.h / a.group();
        const Index column = (e.b * a.heads + e.h) * a.seq + e.j;
        const T* p = probs + column * a.seq;
        const T* vd = v + kv * a.head_dim + e.d + e.b * a.seq * a.kv_rows();  // V_kv(d, key 0)
        T acc = 0;
        for (Index key = 0; key <= e.j; ++key) acc += vd[key * a.kv_rows()] * p[key];
        out[k] = acc;
    }
};

/// dP(key, column) = V_kv(:, key) . dO_h(:, j) for key <= j, else 0 (the
/// probs layout; later overwritten by dS).
template <class T>
struct AttentionDp {
    T* dp;
    const T* v;
    const T* d_out;
    AttentionDims a;
    __host__ __device__ void operator()(Index idx) const {
        const ProbEntry e(idx, a);
        if (e.key > e.j) {
            dp[idx] = T(0);
            return;
        }
        const Index kv = e.h / a.group();
        const T* doj = d_out + (e.b * a.seq + e.j) * a.q_rows() + e.h * a.head_dim;
        const T* vk = v + (e.b * a.seq + e.key) * a.kv_rows() + kv * a.head_dim;
        T dot = 0;
        for (Index d = 0; d < a.head_dim; ++d) dot += vk[d] * doj[d];
        dp[idx] = dot;
    }
};

/// In one column: dS = P (dP - sum_keys P dP), in place over dP. k = column.
template <class T>
struct CausalSoftmaxBackward {
    T* ds;
    const T* probs;
    Index seq;
    __host__ __device__ void operator()(Index column) const {
        T* g = ds + column * seq;
        const T* p = probs + column * seq;
        const Index j = column % seq;
        T dot = 0;
        for (Index key = 0; key <= j; ++key) dot += p[key] * g[key];
        for (Index key = 0; key <= j; ++key) g[key] = p[key] * (g[key] - dot);
    }
};

/// dQ(h hd + d, t) = (sum_{key <= j} K_kv(d, key) dS(key, column)) / sqrt(hd); k indexes dq.
template <class T>
struct AttentionDq {
    T* dq;
    const T* k;
    const T* ds;
    AttentionDims a;
    T inv_sqrt;
    __host__ __device__ void operator()(Index idx) const {
        const HeadEntry e(idx, a.heads, a.head_dim, a.seq);
        const Index kv = e.h / a.group();
        const Index column = (e.b * a.heads + e.h) * a.seq + e.j;
        const T* g = ds + column * a.seq;
        const T* kd = k + kv * a.head_dim + e.d + e.b * a.seq * a.kv_rows();  // K_kv(d, key 0)
        T acc = 0;
        for (Index key = 0; key <= e.j; ++key) acc += kd[key * a.kv_rows()] * g[key];
        dq[idx] = acc * inv_sqrt;
    }
};

/// For kv head kv, key position i of sequence b, dimension d, summing over the
/// group's query heads h and the queries j >= i that see key i:
///   dK(kv hd + d, t) = (sum_h sum_j Q_h(d, j) dS_h(i, j)) / sqrt(hd),
///   dV(kv hd + d, t) =  sum_h sum_j dO_h(d, j) P_h(i, j);
/// k indexes dk and dv (both (kv_heads hd) x T).
template <class T>
struct AttentionDkDv {
    T* dk;
    T* dv;
    const T* q;
    const T* d_out;
    const T* probs;
    const T* ds;
    AttentionDims a;
    T inv_sqrt;
    __host__ __device__ void operator()(Index idx) const {
        const HeadEntry e(idx, a.kv_heads, a.head_dim, a.seq);  // e.h is the kv head, e.j the key position i
        const Index i = e.j;
        T acc_k = 0, acc_v = 0;
        for (Index g = 0; g < a.group(); ++g) {
            const Index h = e.h * a.group() + g;
            for (Index j = i; j < a.seq; ++j) {
                const Index column = (e.b * a.heads + h) * a.seq + j;
                const Index qj = (e.b * a.seq + j) * a.q_rows() + h * a.head_dim + e.d;  // (h hd + d, token of j)
                acc_k += q[qj] * ds[column * a.seq + i];
                acc_v += d_out[qj] * probs[column * a.seq + i];
            }
        }
        dk[idx] = acc_k * inv_sqrt;
        dv[idx] = acc_v;
    }
};

}  // namespace cuda_nn

}  // namespace loranull
