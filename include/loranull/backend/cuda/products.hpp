#pragma once
// The CUDA backend's products: gemm (cublas?gemm), the covariance update
// syrk_lower (cublas?syrk; mixed precision through converted panels; 16-bit
// inputs on tensor cores through cublasGemmEx) and symmetrize_lower.
//
// Precision: fp32 products are true fp32 (cuBLAS's default math mode, no
// TF32), so float results agree with the CPU's to float rounding.
//
// A CRTP base of CudaBackend (cuda_backend.hpp): Bk is CudaBackend, whose
// cuda_detail::CudaContext base (context.hpp) provides the device, the stream,
// the library handles, the workspace and the small helpers used here.
// Included only from .cu translation units.

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "loranull/backend/cuda/check.hpp"
#include "loranull/backend/cuda/context.hpp"
#include "loranull/backend/cuda/device_matrix.hpp"
#include "loranull/backend/cuda/kernels.hpp"
#include "loranull/core/error.hpp"
#include "loranull/core/types.hpp"

namespace loranull {

template <class Bk>
class CudaProducts {
    template <class T>
    using Matrix = DeviceMatrix<T>;

public:
    template <Real T>
    void gemm(Op op_a, Op op_b, T alpha, const Matrix<T>& a, const Matrix<T>& b, T beta, Matrix<T>& out) const {
        const char* where = "CudaBackend::gemm";
        const Index m = op_a == Op::none ? a.rows() : a.cols();
        const Index k = op_a == Op::none ? a.cols() : a.rows();
        const Index k2 = op_b == Op::none ? b.rows() : b.cols();
        const Index n = op_b == Op::none ? b.cols() : b.rows();
        require(k == k2 && out.rows() == m && out.cols() == n, where, "op(A) is ", shape_string(m, k), ", op(B) is ",
                shape_string(k2, n), ", out is ", shape_string(out.rows(), out.cols()));
        require(out.size() == 0 || (out.data() != a.data() && out.data() != b.data()), where, "out must not alias A or B");
        if (m == 0 || n == 0) return;
        const cuda_detail::DeviceGuard guard(self().device(), where);
        if (k == 0) {  // out = beta * out (beta = 0 ignores the old contents, NaN included)
            if (beta == T(0)) LORANULL_CUDA_CHECK(cudaMemsetAsync(out.data(), 0, self().bytes(out), self().stream()), where);
            else if (beta != T(1)) self().scale(beta, out);
            return;
        }
        // cuBLAS does not read C when beta == 0, so NaN in the old contents is ignored.
        const int im = cuda_detail::to_int(m, where), in = cuda_detail::to_int(n, where), ik = cuda_detail::to_int(k, where);
        const int lda = cuda_detail::to_int(a.ld(), where), ldb = cuda_detail::to_int(b.ld(), where), ldc = cuda_detail::to_int(out.ld(), where);
        const auto ta = cuda_detail::to_cublas(op_a), tb = cuda_detail::to_cublas(op_b);
        if constexpr (std::is_same_v<T, float>)
            LORANULL_CUBLAS_CHECK(cublasSgemm(self().cublas(), ta, tb, im, in, ik, &alpha, a.data(), lda, b.data(), ldb, &beta,
                                              out.data(), ldc),
                                  where);
        else
            LORANULL_CUBLAS_CHECK(cublasDgemm(self().cublas(), ta, tb, im, in, ik, &alpha, a.data(), lda, b.data(), ldb, &beta,
                                              out.data(), ldc),
                                  where);
    }

    /// out_lower += alpha X X^T (X n x k, out n x n), strictly upper triangle
    /// untouched. X may be float with out double or the reverse (X is
    /// converted a panel of tokens at a time, then ?syrk runs in out's type), or __half/__nv_bfloat16
    /// with out float: then the update runs on tensor cores through
    /// syrk_lower_tensor_core (whose strictly-upper contract is weaker: read it).
    template <cuda_detail::DeviceScalar Tx, Real T>
    void syrk_lower(T alpha, const Matrix<Tx>& x, Matrix<T>& out) const {
        const char* where = "CudaBackend::syrk_lower";
        require(out.rows() == x.rows() && out.cols() == x.rows(), where, "X is ", shape_string(x.rows(), x.cols()),
                ", out is ", shape_string(out.rows(), out.cols()), ", expected out ", shape_string(x.rows(), x.rows()));
        if (x.rows() == 0 || x.cols() == 0) return;
        const cuda_detail::DeviceGuard guard(self().device(), where);
        if constexpr (std::is_same_v<Tx, T>) {
            const int n = cuda_detail::to_int(x.rows(), where), k = cuda_detail::to_int(x.cols(), where);
            const int ldx = cuda_detail::to_int(x.ld(), where), ldc = cuda_detail::to_int(out.ld(), where);
            const T one = T(1);
            if constexpr (std::is_same_v<T, float>)
                LORANULL_CUBLAS_CHECK(cublasSsyrk(self().cublas(), CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, n, k, &alpha, x.data(),
                                                  ldx, &one, out.data(), ldc),
                                      where);
            else
                LORANULL_CUBLAS_CHECK(cublasDsyrk(self().cublas(), CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, n, k, &alpha, x.data(),
                                                  ldx, &one, out.data(), ldc),
                                      where);
        } else if constexpr (Real<Tx>) {
            // float into double (or double into float): convert a panel of
            // tokens at a time, which bounds the extra memory (n x panel of T)
            // and keeps the rank update wide enough for full ?syrk speed.
            const Index panel = std::max<Index>(256, std::min<Index>(4096, (Index(1) << 27) / x.rows()));
            for (Index start = 0; start < x.cols(); start += panel) {
                const Index width = std::min(panel, x.cols() - start);
                Matrix<T> converted(x.rows(), width, self().stream_handle());
                cuda_detail::for_each_index(converted.size(),
                                            cuda_detail::Convert<T, Tx>{converted.data(), x.data() + start * x.rows()},
                                            self().stream(), where);
                syrk_lower(alpha, converted, out);
            }
        } else if constexpr (cuda_detail::HalfScalar<Tx> && std::is_same_v<T, float>) {
            syrk_lower_tensor_core(alpha, x, out);
        } else {
            static_assert(cuda_detail::always_false<Tx>,
                          "CudaBackend::syrk_lower: X float or double into float or double, or __half/__nv_bfloat16 "
                          "into float");
        }
    }

    /// out_lower += a_lower, a converted to out's type (Covariance's
    /// fp32_panels: a float panel of products into the double sum).
    template <Real Ta, Real T>
    void add_lower(const Matrix<Ta>& a, Matrix<T>& out) const {
        const char* where = "CudaBackend::add_lower";
        require(a.rows() == a.cols() && out.rows() == a.rows() && out.cols() == a.cols(), where, "A is ",
                shape_string(a.rows(), a.cols()), ", out is ", shape_string(out.rows(), out.cols()),
                " (need equal square shapes)");
        if (a.size() == 0) return;
        const cuda_detail::DeviceGuard guard(self().device(), where);
        cuda_detail::for_each_index(a.size(), cuda_detail::AddLower<T, Ta>{out.data(), a.data(), a.rows()},
                                    self().stream(), where);
    }

    /// The covariance kernel on tensor cores: out += alpha X X^T for X (n x k)
    /// in __half or __nv_bfloat16, accumulated in fp32 (cublasGemmEx,
    /// CUBLAS_COMPUTE_32F), out n x n float.
    ///
    /// cuBLAS has no real 16-bit-input syrk, so this is a blocked syrk made of
    /// GEMMs: for each block column J of width `block` (1024), the panel
    /// out[J0:n, J] += alpha X[J0:n, :] X[J, :]^T. That computes the lower
    /// triangle plus the upper halves of the diagonal blocks, about
    /// (1/2 + block / 2n) of the flops of the full X X^T, at tensor-core speed.
    /// Contract: the lower triangle (diagonal included) receives exactly what
    /// syrk_lower promises; entries above the diagonal *inside* a diagonal
    /// block also receive their (symmetric) update; every other upper entry is
    /// untouched. symmetrize_lower() afterwards gives the full matrix either way.
    template <cuda_detail::HalfScalar Tx>
    void syrk_lower_tensor_core(float alpha, const Matrix<Tx>& x, Matrix<float>& out, Index block = 1024) const {
        const char* where = "CudaBackend::syrk_lower_tensor_core";
        require(out.rows() == x.rows() && out.cols() == x.rows(), where, "X is ", shape_string(x.rows(), x.cols()),
                ", out is ", shape_string(out.rows(), out.cols()), ", expected out ", shape_string(x.rows(), x.rows()));
        require(block > 0, where, "block must be positive, got ", block);
        if (x.rows() == 0 || x.cols() == 0) return;
        const cuda_detail::DeviceGuard guard(self().device(), where);
        const Index n = x.rows();
        const int k = cuda_detail::to_int(x.cols(), where), ldx = cuda_detail::to_int(x.ld(), where), ldc = cuda_detail::to_int(out.ld(), where);
        const float one = 1.0f;
        constexpr cudaDataType type = cuda_detail::data_type<Tx>();
        for (Index j0 = 0; j0 < n; j0 += block) {
            const Index width = std::min(block, n - j0);
            const int rows = cuda_detail::to_int(n - j0, where);
            LORANULL_CUBLAS_CHECK(cublasGemmEx(self().cublas(), CUBLAS_OP_N, CUBLAS_OP_T, rows, cuda_detail::to_int(width, where), k, &alpha,
                                               x.data() + j0, type, ldx, x.data() + j0, type, ldx, &one,
                                               out.data() + j0 + j0 * n, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
                                               CUBLAS_GEMM_DEFAULT),
                                  where);
        }
    }

    /// out = tril(out) + tril(out, -1)^T.
    template <Real T>
    void symmetrize_lower(Matrix<T>& out) const {
        const char* where = "CudaBackend::symmetrize_lower";
        require(out.rows() == out.cols(), where, "matrix is ", shape_string(out.rows(), out.cols()), ", expected square");
        const cuda_detail::DeviceGuard guard(self().device(), where);
        cuda_detail::for_each_index(out.size(), cuda_detail::SymmetrizeLower<T>{out.data(), out.rows()}, self().stream(), where);
    }

private:
    const Bk& self() const { return static_cast<const Bk&>(*this); }
};

}  // namespace loranull
