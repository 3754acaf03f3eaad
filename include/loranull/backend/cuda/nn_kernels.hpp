#pragma once
// The CUDA backend's neural-network kernels: every primitive of NnBackend
// (backend/nn.hpp) on the GPU, the device twins of backend/cpu/nn_kernels.hpp
// (the oracle: same equations, same shapes, same cache layouts).
//
// Three layers, bottom to top:
//
//   functors      one per step of one op, each computing the outputs of ONE
//                 index k (an element, a column or a row) from the inputs, as
//                 a __host__ __device__ operator(): no shared memory, no
//                 atomics, no __syncthreads, no thread writes what another
//                 reads in the same launch. Naive on purpose (a thread per
//                 softmax column loops over the keys); correct and
//                 deterministic first, fast later.
//   nn_raw::      each op as a sequence of launches of those functors on raw
//                 pointers, through a `launch(count, functor)` callable. The
//                 backend launches on its stream (DeviceLaunch below); the test
//                 tests/cuda/nn_host_emulation.cu runs the same sequence with
//                 a host loop, so the kernels' index arithmetic and math are
//                 checked against the CPU kernels on a machine without a GPU.
//   CudaNnKernels the CudaBackend members (a CRTP base): argument checks
//                 (messages as the CPU's, with "CudaBackend::"), allocation of
//                 outputs and scratch on the backend's stream, token ids
//                 uploaded, then nn_raw::.
//
// Layouts (column-major, T = batch * seq tokens, token t = b * seq + position),
// exactly as the CPU's:
//   activations       d x T
//   q, k, v           (heads * head_dim) x T, head h in rows [h hd, (h + 1) hd)
//   attention probs   seq x (seq * heads * batch): column (b * heads + h) * seq + j
//                     holds P[key, query j] of sequence b, head h; 0 for key > j
//   token ids         std::vector<std::int32_t> on the host, uploaded per call
//
// Determinism: no atomics anywhere, every sum runs in a fixed order in one
// thread, so one input gives the same bits on every run. The embedding
// backward groups the token positions by id on the host and adds them in
// position order: the same order as the CPU's loop, hence the same bits.
//
// Precision: sums are accumulated in T (as the CPU's Eigen code does); exp,
// log, sqrt are CUDA's IEEE-accurate versions (expf has <= 2 ulp error; no
// --use_fast_math); RoPE's angles are computed in double on the device, as the
// CPU computes them in double on the host. nvcc contracts a * b + c into FMAs,
// so results differ from the CPU's in the last bits; tests/cuda states the
// tolerances.
//
// Included only from .cu translation units (through cuda_backend.hpp).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <type_traits>
#include <vector>

#include <cuda_runtime_api.h>

#include "loranull/backend/cuda/check.hpp"
#include "loranull/backend/cuda/device_matrix.hpp"
#include "loranull/backend/cuda/kernels.hpp"
#include "loranull/backend/nn.hpp"
#include "loranull/core/error.hpp"
#include "loranull/core/types.hpp"

namespace loranull {

namespace cuda_nn {

// --- math in T, the same names on host and device --------------------------------

template <class T>
__host__ __device__ inline T exp_of(T x) {
    if constexpr (std::is_same_v<T, float>) return expf(x);
    else return exp(x);
}
template <class T>
__host__ __device__ inline T log_of(T x) {
    if constexpr (std::is_same_v<T, float>) return logf(x);
    else return log(x);
}
template <class T>
__host__ __device__ inline T sqrt_of(T x) {
    if constexpr (std::is_same_v<T, float>) return sqrtf(x);
    else return sqrt(x);
}
template <class T>
__host__ __device__ inline T max_of(T a, T b) {
    return a > b ? a : b;
}

/// The geometry of one attention call: AttentionShape plus the batch.
struct AttentionDims {
    Index heads, kv_heads, head_dim, seq, batch;
    __host__ __device__ Index group() const { return heads / kv_heads; }
    __host__ __device__ Index q_rows() const { return heads * head_dim; }    // leading dimension of q, out, dq
    __host__ __device__ Index kv_rows() const { return kv_heads * head_dim; }  // leading dimension of k, v, dk, dv
    __host__ __device__ Index prob_columns() const { return seq * heads * batch; }
};

// --- embedding ----------------------------------------------------------------------

/// out(i, t) = table(i, tokens[t]); k = i + t d.
template <class T>
struct EmbeddingGather {
    T* out;
    const T* table;
    const std::int32_t* tokens;
    Index d;
    __host__ __device__ void operator()(Index k) const {
        const Index i = k % d, t = k / d;
        out[k] = table[i + static_cast<Index>(tokens[t]) * d];
    }
};

/// d_table(i, ids[u]) += dx(i, positions[p]) for p in [offsets[u], offsets[u+1]),
/// in increasing position order; k = i + u d. The ids are distinct, so each
/// k owns its output entry: no atomics, the CPU's order of additions.
template <class T>
struct EmbeddingScatter {
    T* d_table;
    const T* dx;
    const std::int64_t* ids;        // U distinct token ids
    const std::int64_t* offsets;    // U + 1
    const std::int64_t* positions;  // T positions, grouped by id, increasing within a group
    Index d;
    __host__ __device__ void operator()(Index k) const {
        const Index i = k % d, u = k / d;
        T* entry = d_table + i + ids[u] * d;
        T acc = *entry;
        for (std::int64_t p = offsets[u]; p < offsets[u + 1]; ++p) acc += dx[i + positions[p] * d];
        *entry = acc;
    }
};

// --- RMSNorm --------------------------------------------------------------------------

/// rstd[t] = 1 / sqrt(sum_i x(i, t)^2 / d + eps); k = t.
template <class T>
struct RmsnormStats {
    T* rstd;
    const T* x;
    Index d;
    T eps;
    __host__ __device__ void operator()(Index t) const {
        const T* column = x + t * d;
        T sum = 0;
        for (Index i = 0; i < d; ++i) sum += column[i] * column[i];
        rstd[t] = T(1) / sqrt_of(sum / T(d) + eps);
    }
};

/// y(i, t) = x(i, t) g(i) rstd(t); k = i + t d.
template <class T>
struct RmsnormApply {
    T* y;
    const T* x;
    const T* gain;
    const T* rstd;
    Index d;
    __host__ __device__ void operator()(Index k) const {
        const Index i = k % d, t = k / d;
        y[k] = x[k] * gain[i] * rstd[t];
    }
};

/// dot[t] = sum_i x(i, t) u(i, t), u = g dy; k = t.
template <class T>
struct RmsnormBackwardDot {
    T* dot;
    const T* dy;
    const T* x;
    const T* gain;
    Index d;
    __host__ __device__ void operator()(Index t) const {
        const T* xc = x + t * d;
        const T* dyc = dy + t * d;
        T sum = 0;
        for (Index i = 0; i < d; ++i) sum += xc[i] * (dyc[i] * gain[i]);
        dot[t] = sum;
    }
};

/// dx(i, t) = r u - x r^3 dot[t] / d, r = rstd[t], u = g(i) dy(i, t); k = i + t d.
template <class T>
struct RmsnormBackwardDx {
    T* dx;
    const T* dy;
    const T* x;
    const T* gain;
    const T* rstd;
    const T* dot;
    Index d;
    __host__ __device__ void operator()(Index k) const {
        const Index i = k % d, t = k / d;
        const T r = rstd[t];
        const T u = dy[k] * gain[i];
        dx[k] = r * u - x[k] * (r * r * r * dot[t] / T(d));
    }
};

/// d_gain(i) += sum_t dy(i, t) x(i, t) rstd(t), t in increasing order; k = i.
template <class T>
struct RmsnormBackwardGain {
    T* d_gain;
    const T* dy;
    const T* x;
    const T* rstd;
    Index d;
    Index tokens;
    __host__ __device__ void operator()(Index i) const {
        T acc = d_gain[i];
        for (Index t = 0; t < tokens; ++t) acc += dy[i + t * d] * x[i + t * d] * rstd[t];
        d_gain[i] = acc;
    }
};

// --- rotary embedding -------------------------------------------------------------------

/// HF rotate-half on the pair (h hd + i, h hd + i + hd/2) of token t, position
/// p = t mod seq: (a, b) <- (a c - b s, b c + a s), c = cos(p f_i),
/// s = direction sin(p f_i), f_i = theta^(-2i / hd), angles in double.
/// k = i + half (h + heads t).
template <class T>
struct Rope {
    T* x;
    Index heads, head_dim, seq;
    double theta;
    int direction;
    __host__ __device__ void operator()(Index k) const {
        const Index half = head_dim / 2;
        const Index i = k % half, rest = k / half;
        const Index h = rest % heads, t = rest / heads;
        const Index position = t % seq;
        const double angle = double(position) * pow(theta, -2.0 * double(i) / double(head_dim));
        const T c = T(cos(angle)), s = T(direction * sin(angle));
        T* column = x + t * (heads * head_dim) + h * head_dim;
        const T x1 = column[i], x2 = column[i + half];
        column[i] = x1 * c - x2 * s;
        column[i + half] = x2 * c + x1 * s;
    }
};

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

// --- SwiGLU ----------------------------------------------------------------------------------

/// h = silu(g) u = g / (1 + exp(-g)) u.
template <class T>
struct SwigluForward {
    T* h;
    const T* gate;
    const T* up;
    __host__ __device__ void operator()(Index k) const { h[k] = gate[k] / (T(1) + exp_of(-gate[k])) * up[k]; }
};

/// dgate = dh u sigma (1 + g (1 - sigma)), dup = dh g sigma, sigma = 1 / (1 + exp(-g)).
template <class T>
struct SwigluBackward {
    T* d_gate;
    T* d_up;
    const T* dh;
    const T* gate;
    const T* up;
    __host__ __device__ void operator()(Index k) const {
        const T g = gate[k];
        const T sigma = T(1) / (T(1) + exp_of(-g));
        d_up[k] = dh[k] * g * sigma;
        d_gate[k] = dh[k] * up[k] * sigma * (T(1) + g * (T(1) - sigma));
    }
};

// --- softmax cross-entropy ---------------------------------------------------------------------

/// Column t: probs(:, t) = softmax(logits(:, t)) (max subtracted), and
/// loss[t] = log(sum exp(l - max)) + max - l(y_t) in double (0 when y_t is
/// ignore_target). k = t.
template <class T>
struct CrossEntropyColumns {
    T* probs;
    double* loss;
    const T* logits;
    const std::int32_t* targets;
    Index vocab;
    __host__ __device__ void operator()(Index t) const {
        const T* l = logits + t * vocab;
        T* p = probs + t * vocab;
        T max = l[0];
        for (Index i = 1; i < vocab; ++i) max = max_of(max, l[i]);
        T sum = 0;
        for (Index i = 0; i < vocab; ++i) {
            p[i] = exp_of(l[i] - max);
            sum += p[i];
        }
        for (Index i = 0; i < vocab; ++i) p[i] /= sum;
        loss[t] = targets[t] < 0 ? 0.0 : double(log_of(sum)) + double(max) - double(l[targets[t]]);
    }
};

/// dlogits(i, t) = probs(i, t) / S - [i == y_t] / S over the S scored
/// tokens; 0 where y_t is ignore_target.
template <class T>
struct CrossEntropyBackward {
    T* d;
    const T* probs;
    const std::int32_t* targets;
    Index vocab;
    Index scored;
    __host__ __device__ void operator()(Index k) const {
        const Index i = k % vocab, t = k / vocab;
        if (targets[t] < 0) {
            d[k] = T(0);
            return;
        }
        T value = probs[k] / T(scored);
        if (i == static_cast<Index>(targets[t])) value -= T(1) / T(scored);
        d[k] = value;
    }
};

// --- AdamW -------------------------------------------------------------------------------------

/// The constants of one step, rounded to T as the CPU rounds them.
template <class T>
struct AdamWConstants {
    T beta1, one_minus_beta1, beta2, one_minus_beta2, correction1, correction2, lr, eps, weight_decay;
};

/// m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
/// p -= lr ((m / c1) / (sqrt(v / c2) + eps) + wd p).
template <class T>
struct AdamWUpdate {
    T* param;
    T* m;
    T* v;
    const T* grad;
    AdamWConstants<T> c;
    __host__ __device__ void operator()(Index k) const {
        const T g = grad[k];
        const T mk = c.beta1 * m[k] + c.one_minus_beta1 * g;
        const T vk = c.beta2 * v[k] + c.one_minus_beta2 * (g * g);
        m[k] = mk;
        v[k] = vk;
        param[k] = param[k] - c.lr * ((mk / c.correction1) / (sqrt_of(vk / c.correction2) + c.eps) + c.weight_decay * param[k]);
    }
};

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
void rope(const Launch& launch, T* x, Index heads, Index head_dim, Index seq, Index tokens, double theta, int direction) {
    launch(heads * (head_dim / 2) * tokens, Rope<T>{x, heads, head_dim, seq, theta, direction});
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

/// The NnBackend members of CudaBackend (CRTP base: Backend is CudaBackend,
/// which provides device(), stream() and stream_handle()). Every member makes
/// the backend's device current, checks its arguments on the host, allocates
/// outputs on the backend's stream and enqueues; only cross_entropy_forward
/// (the loss reaches the host) and the token uploads wait for the stream.
template <class Backend>
class CudaNnKernels {
public:
    template <class T>
    using DMatrix = DeviceMatrix<T>;

    // --- embedding -------------------------------------------------------------

    /// X(:, t) = table(:, tokens[t]); table is d x vocab.
    template <Real T>
    DMatrix<T> embedding_forward(const DMatrix<T>& table, const std::vector<std::int32_t>& tokens) const {
        const char* where = "CudaBackend::embedding_forward";
        check_ids(tokens, table.cols(), where, "token id ");
        const cuda_detail::DeviceGuard guard(self().device(), where);
        DMatrix<T> x(table.rows(), static_cast<Index>(tokens.size()), self().stream_handle());
        if (x.size() == 0) return x;
        const auto ids = to_device(tokens, where);
        cuda_nn::nn_raw::embedding_forward(launcher(where), x.data(), table.data(),
                                           static_cast<const std::int32_t*>(ids.data()), table.rows(), x.cols());
        return x;
    }

    /// d_table(:, tokens[t]) += dX(:, t), deterministic (positions grouped by id
    /// on the host, added in order).
    template <Real T>
    void embedding_backward(DMatrix<T>& d_table, const DMatrix<T>& dx, const std::vector<std::int32_t>& tokens) const {
        const char* where = "CudaBackend::embedding_backward";
        require(dx.cols() == static_cast<Index>(tokens.size()) && dx.rows() == d_table.rows(), where, "dX is ",
                shape_string(dx.rows(), dx.cols()), " for ", tokens.size(), " tokens");
        check_ids(tokens, d_table.cols(), where, "token id ");
        if (dx.size() == 0) return;
        const cuda_detail::DeviceGuard guard(self().device(), where);
        Index distinct = 0;
        const auto grouped = to_device(cuda_nn::group_positions_by_id(tokens, d_table.cols(), distinct), where);
        cuda_nn::nn_raw::embedding_backward(launcher(where), d_table.data(), dx.data(),
                                            static_cast<const std::int64_t*>(grouped.data()), distinct, dx.rows());
    }

    // --- RMSNorm ---------------------------------------------------------------

    /// y = x * rstd * g per column, rstd = 1 / sqrt(mean(x^2) + eps); rstd (1 x T) saved.
    template <Real T>
    DMatrix<T> rmsnorm_forward(const DMatrix<T>& x, const DMatrix<T>& gain, T eps, DMatrix<T>& rstd) const {
        const char* where = "CudaBackend::rmsnorm_forward";
        require(gain.rows() == x.rows() && gain.cols() == 1, where, "gain is ", shape_string(gain.rows(), gain.cols()),
                ", expected ", x.rows(), " x 1");
        const cuda_detail::DeviceGuard guard(self().device(), where);
        reshape(rstd, 1, x.cols());
        DMatrix<T> y(x.rows(), x.cols(), self().stream_handle());
        if (x.size() == 0) return y;
        cuda_nn::nn_raw::rmsnorm_forward(launcher(where), y.data(), rstd.data(), x.data(), gain.data(), eps, x.rows(),
                                         x.cols());
        return y;
    }

    /// With u = g * dy:  dx = rstd u - x rstd^3 (x . u) / d,   dg += sum_t dy * x * rstd.
    template <Real T>
    DMatrix<T> rmsnorm_backward(const DMatrix<T>& dy, const DMatrix<T>& x, const DMatrix<T>& gain,
                                const DMatrix<T>& rstd, DMatrix<T>& d_gain) const {
        const char* where = "CudaBackend::rmsnorm_backward";
        require(dy.rows() == x.rows() && dy.cols() == x.cols() && gain.rows() == x.rows() && gain.cols() == 1 &&
                    rstd.rows() == 1 && rstd.cols() == x.cols() && d_gain.rows() == x.rows() && d_gain.cols() == 1,
                where, "dy is ", shape_string(dy.rows(), dy.cols()), ", x ", shape_string(x.rows(), x.cols()),
                ", gain ", shape_string(gain.rows(), gain.cols()), ", rstd ", shape_string(rstd.rows(), rstd.cols()),
                ", d_gain ", shape_string(d_gain.rows(), d_gain.cols()));
        const cuda_detail::DeviceGuard guard(self().device(), where);
        DMatrix<T> dx(x.rows(), x.cols(), self().stream_handle());
        if (x.size() == 0) return dx;
        DMatrix<T> dots(1, x.cols(), self().stream_handle());
        cuda_nn::nn_raw::rmsnorm_backward(launcher(where), dx.data(), d_gain.data(), dots.data(), dy.data(), x.data(),
                                          gain.data(), rstd.data(), x.rows(), x.cols());
        return dx;
    }

    // --- rotary position embedding (Hugging Face "rotate half" layout) ---------

    /// In place; direction = -1 applies the inverse rotation (the backward).
    template <Real T>
    void rope(DMatrix<T>& x, Index heads, Index head_dim, Index seq_len, double theta, int direction = 1) const {
        const char* where = "CudaBackend::rope";
        require(heads >= 1 && head_dim >= 2 && x.rows() == heads * head_dim && head_dim % 2 == 0 && seq_len > 0 &&
                    x.cols() % seq_len == 0,
                where, "x is ", shape_string(x.rows(), x.cols()), " for ", heads, " heads of ", head_dim,
                " (even) and sequences of ", seq_len);
        if (x.size() == 0) return;
        const cuda_detail::DeviceGuard guard(self().device(), where);
        cuda_nn::nn_raw::rope(launcher(where), x.data(), heads, head_dim, seq_len, x.cols(), theta, direction);
    }

    // --- causal grouped-query attention ----------------------------------------

    /// O = V softmax_causal(K^T Q / sqrt(hd)) per sequence and head; probs saved
    /// (seq x (seq * heads * batch), the CPU's layout).
    template <Real T>
    DMatrix<T> attention_forward(const DMatrix<T>& q, const DMatrix<T>& k, const DMatrix<T>& v, const AttentionShape& a,
                                 DMatrix<T>& probs) const {
        const char* where = "CudaBackend::attention_forward";
        const cuda_nn::AttentionDims dims = check_attention(q, k, v, a, where);
        const cuda_detail::DeviceGuard guard(self().device(), where);
        reshape(probs, dims.seq, dims.prob_columns());
        DMatrix<T> out(q.rows(), q.cols(), self().stream_handle());
        if (out.size() == 0) return out;
        cuda_nn::nn_raw::attention_forward(launcher(where), out.data(), probs.data(), q.data(), k.data(), v.data(), dims);
        return out;
    }

    /// dq, dk, dv are (re)allocated and overwritten (not accumulated), as on the CPU.
    template <Real T>
    void attention_backward(const DMatrix<T>& d_out, const DMatrix<T>& q, const DMatrix<T>& k, const DMatrix<T>& v,
                            const DMatrix<T>& probs, const AttentionShape& a, DMatrix<T>& dq, DMatrix<T>& dk,
                            DMatrix<T>& dv) const {
        const char* where = "CudaBackend::attention_backward";
        const cuda_nn::AttentionDims dims = check_attention(q, k, v, a, where);
        require(d_out.rows() == q.rows() && d_out.cols() == q.cols() && probs.rows() == dims.seq &&
                    probs.cols() == dims.prob_columns(),
                where, "dO is ", shape_string(d_out.rows(), d_out.cols()), ", probs ",
                shape_string(probs.rows(), probs.cols()), " for q ", shape_string(q.rows(), q.cols()));
        const cuda_detail::DeviceGuard guard(self().device(), where);
        reshape(dq, q.rows(), q.cols());
        reshape(dk, k.rows(), k.cols());
        reshape(dv, v.rows(), v.cols());
        if (q.size() == 0) return;
        DMatrix<T> ds(probs.rows(), probs.cols(), self().stream_handle());
        cuda_nn::nn_raw::attention_backward(launcher(where), dq.data(), dk.data(), dv.data(), ds.data(), d_out.data(),
                                            q.data(), k.data(), v.data(), probs.data(), dims);
    }

    // --- SwiGLU ------------------------------------------------------------------

    /// h = silu(g) * u, silu(g) = g / (1 + exp(-g)).
    template <Real T>
    DMatrix<T> swiglu_forward(const DMatrix<T>& gate, const DMatrix<T>& up) const {
        const char* where = "CudaBackend::swiglu_forward";
        require(gate.rows() == up.rows() && gate.cols() == up.cols(), where, "gate is ",
                shape_string(gate.rows(), gate.cols()), ", up is ", shape_string(up.rows(), up.cols()));
        const cuda_detail::DeviceGuard guard(self().device(), where);
        DMatrix<T> h(gate.rows(), gate.cols(), self().stream_handle());
        cuda_nn::nn_raw::swiglu_forward(launcher(where), h.data(), gate.data(), up.data(), h.size());
        return h;
    }

    /// dgate = dh * u * sigma(g) (1 + g (1 - sigma(g))),  dup = dh * silu(g).
    template <Real T>
    void swiglu_backward(const DMatrix<T>& dh, const DMatrix<T>& gate, const DMatrix<T>& up, DMatrix<T>& d_gate,
                         DMatrix<T>& d_up) const {
        const char* where = "CudaBackend::swiglu_backward";
        require(gate.rows() == up.rows() && gate.cols() == up.cols() && dh.rows() == gate.rows() &&
                    dh.cols() == gate.cols(),
                where, "dh is ", shape_string(dh.rows(), dh.cols()), ", gate ", shape_string(gate.rows(), gate.cols()),
                ", up ", shape_string(up.rows(), up.cols()));
        const cuda_detail::DeviceGuard guard(self().device(), where);
        reshape(d_gate, gate.rows(), gate.cols());
        reshape(d_up, gate.rows(), gate.cols());
        cuda_nn::nn_raw::swiglu_backward(launcher(where), d_gate.data(), d_up.data(), dh.data(), gate.data(), up.data(),
                                         gate.size());
    }

    // --- softmax cross-entropy -------------------------------------------------

    /// Mean over the scored tokens of -log softmax(logits(:, t))[targets[t]]
    /// (ignore_target scores nothing); probs (V x T) saved. The per-token losses
    /// (double) come back to the host and are summed there in token order, as
    /// the CPU sums them.
    template <Real T>
    double cross_entropy_forward(const DMatrix<T>& logits, const std::vector<std::int32_t>& targets,
                                 DMatrix<T>& probs) const {
        const char* where = "CudaBackend::cross_entropy_forward";
        require(logits.cols() == static_cast<Index>(targets.size()) && logits.cols() > 0 && logits.rows() > 0, where,
                "logits are ", shape_string(logits.rows(), logits.cols()), " for ", targets.size(), " targets");
        const Index scored = scored_targets(targets, logits.rows(), where);
        const cuda_detail::DeviceGuard guard(self().device(), where);
        reshape(probs, logits.rows(), logits.cols());
        const auto device_targets = to_device(targets, where);
        cuda_detail::DeviceBuffer losses(sizeof(double) * targets.size(), self().stream_handle());
        cuda_nn::nn_raw::cross_entropy_forward(launcher(where), probs.data(), static_cast<double*>(losses.data()),
                                               logits.data(), static_cast<const std::int32_t*>(device_targets.data()),
                                               logits.rows(), logits.cols());
        std::vector<double> host(targets.size());
        LORANULL_CUDA_CHECK(cudaMemcpyAsync(host.data(), losses.data(), losses.bytes(), cudaMemcpyDeviceToHost,
                                            self().stream()),
                            where);
        LORANULL_CUDA_CHECK(cudaStreamSynchronize(self().stream()), where);
        double loss = 0;
        for (double l : host) loss += l;
        return loss / double(scored);
    }

    /// dlogits = (probs - onehot(targets)) / S over the S scored tokens, 0 in
    /// ignored columns.
    template <Real T>
    DMatrix<T> cross_entropy_backward(const DMatrix<T>& probs, const std::vector<std::int32_t>& targets) const {
        const char* where = "CudaBackend::cross_entropy_backward";
        require(probs.cols() == static_cast<Index>(targets.size()) && probs.cols() > 0, where, "probs are ",
                shape_string(probs.rows(), probs.cols()), " for ", targets.size(), " targets");
        const Index scored = scored_targets(targets, probs.rows(), where);
        const cuda_detail::DeviceGuard guard(self().device(), where);
        DMatrix<T> d(probs.rows(), probs.cols(), self().stream_handle());
        const auto device_targets = to_device(targets, where);
        cuda_nn::nn_raw::cross_entropy_backward(launcher(where), d.data(), probs.data(),
                                                static_cast<const std::int32_t*>(device_targets.data()), probs.rows(),
                                                probs.cols(), scored);
        return d;
    }

    // --- AdamW (decoupled weight decay) ------------------------------------------

    /// m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    /// p -= lr (m / (1 - b1^step) / (sqrt(v / (1 - b2^step)) + eps) + wd p).
    template <Real T>
    void adamw_update(DMatrix<T>& param, const DMatrix<T>& grad, DMatrix<T>& m, DMatrix<T>& v, double lr, double beta1,
                      double beta2, double eps, double weight_decay, long step) const {
        const char* where = "CudaBackend::adamw_update";
        require(grad.rows() == param.rows() && grad.cols() == param.cols() && m.size() == param.size() &&
                    v.size() == param.size(),
                where, "param is ", shape_string(param.rows(), param.cols()), ", grad is ",
                shape_string(grad.rows(), grad.cols()));
        if (param.size() == 0) return;
        const cuda_detail::DeviceGuard guard(self().device(), where);
        cuda_nn::nn_raw::adamw_update(launcher(where), param.data(), m.data(), v.data(), grad.data(),
                                      cuda_nn::adamw_constants<T>(lr, beta1, beta2, eps, weight_decay, step),
                                      param.size());
    }

private:
    const Backend& self() const { return static_cast<const Backend&>(*this); }

    cuda_nn::DeviceLaunch launcher(const char* where) const { return {self().stream(), where}; }

    /// Makes `m` rows x cols (reallocating only when the shape differs); contents undefined.
    template <class T>
    void reshape(DMatrix<T>& m, Index rows, Index cols) const {
        if (m.rows() != rows || m.cols() != cols || m.stream_handle() != self().stream_handle())
            m = DMatrix<T>(rows, cols, self().stream_handle());
    }

    /// Every id in [0, limit), the first offender named as the CPU names it.
    static void check_ids(const std::vector<std::int32_t>& ids, Index limit, const char* where, const char* what) {
        for (std::size_t t = 0; t < ids.size(); ++t)
            require(ids[t] >= 0 && ids[t] < limit, where, what, ids[t], " at position ", t,
                    " is outside the vocabulary of ", limit);
    }

    template <class M>
    static cuda_nn::AttentionDims check_attention(const M& q, const M& k, const M& v, const AttentionShape& a,
                                                  const char* where) {
        require(a.heads >= 1 && a.kv_heads >= 1 && a.heads % a.kv_heads == 0 && a.head_dim >= 1 && a.seq_len >= 1,
                where, "heads ", a.heads, " not a multiple of kv heads ", a.kv_heads);
        require(q.rows() == a.heads * a.head_dim && k.rows() == a.kv_heads * a.head_dim && v.rows() == k.rows() &&
                    k.cols() == q.cols() && v.cols() == q.cols() && q.cols() % a.seq_len == 0,
                where, "q is ", shape_string(q.rows(), q.cols()), ", k ", shape_string(k.rows(), k.cols()), ", v ",
                shape_string(v.rows(), v.cols()), " for ", a.heads, "/", a.kv_heads, " heads of ", a.head_dim,
                " and sequences of ", a.seq_len);
        return {a.heads, a.kv_heads, a.head_dim, a.seq_len, q.cols() / a.seq_len};
    }

    /// A host vector copied into a fresh device buffer on the backend's stream,
    /// synchronised so that the pageable source may go away at once.
    template <class I>
    cuda_detail::DeviceBuffer to_device(const std::vector<I>& values, const char* where) const {
        cuda_detail::DeviceBuffer buffer(values.size() * sizeof(I), self().stream_handle());
        if (!values.empty()) {
            LORANULL_CUDA_CHECK(cudaMemcpyAsync(buffer.data(), values.data(), buffer.bytes(), cudaMemcpyHostToDevice,
                                                self().stream()),
                                where);
            LORANULL_CUDA_CHECK(cudaStreamSynchronize(self().stream()), where);
        }
        return buffer;
    }
};

}  // namespace loranull
