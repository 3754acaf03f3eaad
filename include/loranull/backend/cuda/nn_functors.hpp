#pragma once
// The CUDA backend's NN kernels, layer 1 of 3: the per-index functors of every
// op except attention (nn_attention_functors.hpp), and the math both share.
//
// Each functor computes the outputs of ONE index k (an element, a column or a
// row) from the inputs, as a __host__ __device__ operator(): no shared memory,
// no atomics, no __syncthreads, no thread writes what another reads in the same
// launch. Naive on purpose (a thread per column loops over the rows); correct
// and deterministic first, fast later. Being __host__ too is what lets
// tests/cuda run them on a machine without a GPU (the host emulation).
//
// Layouts (column-major, T = batch * seq tokens, token t = b * seq + position),
// exactly as the CPU's (backend/cpu/nn_kernels.hpp, the oracle):
//   activations       d x T
//   q, k, v           (heads * head_dim) x T, head h in rows [h hd, (h + 1) hd)
//   attention probs   seq x (seq * heads * batch): column (b * heads + h) * seq + j
//                     holds P[key, query j] of sequence b, head h; 0 for key > j
//
// Precision: sums are accumulated in T (as the CPU's Eigen code does); exp,
// log, sqrt are CUDA's IEEE-accurate versions (expf has <= 2 ulp error; no
// --use_fast_math); RoPE's angles are computed in double on the device, as the
// CPU computes them in double on the host. nvcc contracts a * b + c into FMAs,
// so results differ from the CPU's in the last bits; tests/cuda states the
// tolerances.
//
// Needs only the CUDA runtime's __host__ __device__ math: no Thrust, no cuBLAS.

#include <cmath>
#include <cstdint>
#include <type_traits>

#include <cuda_runtime_api.h>

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
/// s = direction sin(p f_i), f_i the i-th inverse frequency (llama/rope.hpp:
/// theta^(-2i / hd), rescaled per rope_scaling), angles in double.
/// k = i + half (h + heads t).
template <class T>
struct Rope {
    T* x;
    Index heads, head_dim, seq;
    const double* frequencies;  // head_dim / 2, in the launcher's memory
    int direction;
    __host__ __device__ void operator()(Index k) const {
        const Index half = head_dim / 2;
        const Index i = k % half, rest = k / half;
        const Index h = rest % heads, t = rest / heads;
        const Index position = t % seq;
        const double angle = double(position) * frequencies[i];
        const T c = T(cos(angle)), s = T(direction * sin(angle));
        T* column = x + t * (heads * head_dim) + h * head_dim;
        const T x1 = column[i], x2 = column[i + half];
        column[i] = x1 * c - x2 * s;
        column[i + half] = x2 * c + x1 * s;
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

}  // namespace cuda_nn

}  // namespace loranull
