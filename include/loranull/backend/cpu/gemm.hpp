#pragma once
// The CPU backend's one product: c = alpha op(a) op(b) + beta c on Eigen
// matrices or blocks of them (column-major, any outer stride), through BLAS
// ?gemm so that OpenBLAS's threads run every product (no Eigen OpenMP product
// spinning against them: docs/benchmarks.md, "one trap"), or through Eigen's
// blocked GEMM when built without LAPACK (LORANULL_CPU_NO_LAPACK).
// CpuBackend::gemm (after its shape checks) and the per-head products of
// attention (cpu/nn_kernels.hpp) both call it.

#include <type_traits>

#include <Eigen/Dense>

#include "loranull/core/types.hpp"
#ifndef LORANULL_CPU_NO_LAPACK
#include "loranull/backend/cpu/lapack.hpp"
#endif

namespace loranull::cpu_detail {

/// beta = 0 ignores c's old contents, NaN included. Shapes are the caller's to
/// check; sizes beyond LAPACK's int are refused by name (`where`).
template <class A, class B, class C>
void gemm(bool transpose_a, bool transpose_b, typename std::remove_cvref_t<C>::Scalar alpha, const A& a, const B& b,
          typename std::remove_cvref_t<C>::Scalar beta, C&& c, const char* where = "CpuBackend::gemm") {
    using T = typename std::remove_cvref_t<C>::Scalar;
    const Index k = transpose_a ? a.rows() : a.cols();
#ifndef LORANULL_CPU_NO_LAPACK
    if (c.rows() > 0 && c.cols() > 0 && k > 0) {
        lapack::gemm<T>(transpose_a, transpose_b, lapack::to_int(c.rows(), where), lapack::to_int(c.cols(), where),
                        lapack::to_int(k, where), alpha, a.data(), lapack::to_int(a.outerStride(), where), b.data(),
                        lapack::to_int(b.outerStride(), where), beta, c.data(), lapack::to_int(c.outerStride(), where));
        return;
    }
#else
    (void)where;
#endif
    if (beta == T(0)) c.setZero();
    else if (beta != T(1)) c *= beta;
    if (c.rows() == 0 || c.cols() == 0 || k == 0) return;
    // Eigen dispatches each of the four cases to its blocked GEMM kernel.
    if (transpose_a && transpose_b) c.noalias() += alpha * a.transpose() * b.transpose();
    else if (transpose_a) c.noalias() += alpha * a.transpose() * b;
    else if (transpose_b) c.noalias() += alpha * a * b.transpose();
    else c.noalias() += alpha * a * b;
}

}  // namespace loranull::cpu_detail
