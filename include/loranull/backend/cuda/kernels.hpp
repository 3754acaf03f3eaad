#pragma once
// The CUDA backend's own small kernels and the Thrust functors of its
// elementwise work and reductions. Each is the device twin of one line of the
// CPU backend; all index arithmetic is 64-bit (Index), column-major, element
// (i, j) of a rows x cols matrix at i + j * rows.
//
// One launcher, for_each_index(count, f, stream), runs f(k) for k in
// [0, count) with a grid-stride loop: a functor per operation, no
// --extended-lambda needed. Included only from .cu translation units.

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "loranull/backend/cuda/check.hpp"
#include "loranull/core/types.hpp"

namespace loranull::cuda_detail {

/// Scalars stored on the device: the library's Real types plus the 16-bit
/// formats of the tensor-core covariance path.
template <class T>
concept DeviceScalar = Real<T> || std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>;

template <class T>
concept HalfScalar = std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>;

/// The type reductions over T return on the host: T itself, or float for the
/// 16-bit formats.
template <class T>
using accumulate_t = std::conditional_t<HalfScalar<T>, float, T>;

/// static_cast between any two DeviceScalars (16-bit ones round to nearest even,
/// once: from double directly, not through float).
template <class To, class From>
__host__ __device__ inline To convert_scalar(From x) {
    if constexpr (std::is_same_v<To, From>) {
        return x;
    } else if constexpr (std::is_same_v<From, __half>) {
        return convert_scalar<To>(__half2float(x));
    } else if constexpr (std::is_same_v<From, __nv_bfloat16>) {
        return convert_scalar<To>(__bfloat162float(x));
    } else if constexpr (std::is_same_v<To, __half> && std::is_same_v<From, double>) {
        return __double2half(x);  // directly: through float would round twice
    } else if constexpr (std::is_same_v<To, __nv_bfloat16> && std::is_same_v<From, double>) {
        return __double2bfloat16(x);
    } else if constexpr (std::is_same_v<To, __half>) {
        return __float2half_rn(static_cast<float>(x));
    } else if constexpr (std::is_same_v<To, __nv_bfloat16>) {
        return __float2bfloat16_rn(static_cast<float>(x));
    } else {
        return static_cast<To>(x);
    }
}

template <class F>
__global__ void for_each_index_kernel(Index count, F f) {
    const Index stride = static_cast<Index>(blockDim.x) * gridDim.x;
    for (Index k = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; k < count; k += stride) f(k);
}

/// f(k) for every k in [0, count), on `stream`; the launch is checked.
template <class F>
void for_each_index(Index count, F f, cudaStream_t stream, const char* where) {
    if (count <= 0) return;
    constexpr int threads = 256;
    const Index wanted = (count + threads - 1) / threads;
    const unsigned blocks = static_cast<unsigned>(std::min<Index>(wanted, Index(1) << 20));
    for_each_index_kernel<<<blocks, threads, 0, stream>>>(count, f);
    LORANULL_CUDA_CHECK(cudaGetLastError(), where);
}

// --- kernels' functors (k is the linear index of the element they own) -------

/// a(i, j) = a(j, i) for i < j: copies the lower triangle onto the upper one.
template <class T>
struct SymmetrizeLower {
    T* a;
    Index n;
    __device__ void operator()(Index k) const {
        const Index i = k % n, j = k / n;
        if (i < j) a[i + j * n] = a[j + i * n];
    }
};

/// a(k, k) += alpha, k < min(rows, cols).
template <class T>
struct AddToDiagonal {
    T* a;
    Index ld;
    T alpha;
    __device__ void operator()(Index k) const { a[k + k * ld] += alpha; }
};

/// a(i, j) *= factors[j].
template <class T>
struct ScaleColumns {
    T* a;
    const T* factors;
    Index rows;
    __device__ void operator()(Index k) const { a[k] *= factors[k / rows]; }
};

/// a(i, j) *= factors[i].
template <class T>
struct ScaleRows {
    T* a;
    const T* factors;
    Index rows;
    __device__ void operator()(Index k) const { a[k] *= factors[k % rows]; }
};

/// out(i, j) = a(i, which[j]).
template <class T>
struct GatherColumns {
    T* out;
    const T* a;
    const std::int64_t* which;
    Index rows;
    __device__ void operator()(Index k) const {
        const Index i = k % rows, j = k / rows;
        out[k] = a[i + static_cast<Index>(which[j]) * rows];
    }
};

/// out[k] = convert(in[k]).
template <class To, class From>
struct Convert {
    To* out;
    const From* in;
    __device__ void operator()(Index k) const { out[k] = convert_scalar<To>(in[k]); }
};

/// out(i, j) += convert(in(i, j)) for i >= j (n x n, column-major): a float
/// panel of products added to a double sum, lower triangle only.
template <class To, class From>
struct AddLower {
    To* out;
    const From* in;
    Index n;
    __host__ __device__ void operator()(Index k) const {
        if (k % n >= k / n) out[k] += convert_scalar<To>(in[k]);
    }
};

// --- Thrust functors ------------------------------------------------------------

template <class T>
struct Scale {
    T alpha;
    __host__ __device__ T operator()(T x) const { return alpha * x; }
};

template <class T>
struct Axpy {  // (a, out) -> out + alpha * a
    T alpha;
    __host__ __device__ T operator()(T a, T out) const { return out + alpha * a; }
};

template <class T>
struct DiagonalEntry {  // k -> a(k, k)
    const T* a;
    Index ld;
    __host__ __device__ T operator()(Index k) const { return a[k + k * ld]; }
};

template <class T>
struct SquareAsDouble {  // x -> x^2 in double
    __host__ __device__ double operator()(T x) const {
        const double v = convert_scalar<double>(x);
        return v * v;
    }
};

template <class T>
struct SquareAs {  // x -> x^2 in accumulate_t<T>
    __host__ __device__ accumulate_t<T> operator()(T x) const {
        const auto v = convert_scalar<accumulate_t<T>>(x);
        return v * v;
    }
};

template <class T>
struct ProductAs {  // (x, y) -> x y in accumulate_t<T>
    __host__ __device__ accumulate_t<T> operator()(T x, T y) const {
        return convert_scalar<accumulate_t<T>>(x) * convert_scalar<accumulate_t<T>>(y);
    }
};

template <class T>
struct ToAccumulate {
    __host__ __device__ accumulate_t<T> operator()(T x) const { return convert_scalar<accumulate_t<T>>(x); }
};

template <class T>
struct NotFinite {
    __host__ __device__ bool operator()(T x) const {
        const auto v = convert_scalar<accumulate_t<T>>(x);
        return !isfinite(v);
    }
};

template <class T>
struct Maximum {  // NaN-propagating max (a NaN entry makes max_coeff NaN)
    __host__ __device__ T operator()(T a, T b) const { return (a != a || a > b) ? a : b; }
};

}  // namespace loranull::cuda_detail
