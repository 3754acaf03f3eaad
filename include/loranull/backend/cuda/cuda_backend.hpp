#pragma once
// The CUDA backend: the primitive set of backend.hpp on one NVIDIA GPU.
//
//   storage        DeviceMatrix<T> (device_matrix.hpp): stream-ordered
//                  cudaMallocAsync / cudaMemcpyAsync / cudaFreeAsync
//   products       cuBLAS: ?gemm, ?syrk (lower), ?geam (transposes); the
//                  tensor-core covariance through cublasGemmEx (bf16/fp16 in,
//                  fp32 accumulation)
//   decompositions cuSOLVER: cusolverDnXsyevd (all pairs), cusolverDnXsyevdx
//                  (index range), cusolverDnXgesvd (thin SVD; m < n through
//                  the SVD of A^T), ?geqrf + ?orgqr (thin Q)
//   elementwise    Thrust on the backend's stream (reductions), small
//                  grid-stride kernels (kernels.hpp) for the rest
//   NN kernels     embedding, RMSNorm, RoPE, causal GQA attention, SwiGLU,
//                  cross-entropy, AdamW (nn_kernels.hpp, the CudaNnKernels
//                  base), so that llama/ runs on the GPU
//
// One CudaBackend owns one non-blocking stream, one cuBLAS handle and one
// cuSOLVER handle bound to that stream, a growing cuSOLVER workspace and a
// devInfo word. Every call is enqueued on the stream; the host waits only
// where a result must reach it (download, reductions, eigen/singular values,
// devInfo checks). Every CUDA, cuBLAS and cuSOLVER status is checked and a
// failure throws loranull::error naming the entry point, the call and the
// status (check.hpp). Argument checks and their messages mirror CpuBackend,
// with "CudaBackend::" in place of "CpuBackend::".
//
// Precision: fp32 products are true fp32 (cuBLAS's default math mode, no
// TF32), so float results agree with the CPU's to float rounding.
//
// Include only from .cu translation units: this header pulls in the CUDA
// runtime, cuBLAS, cuSOLVER and Thrust, and never Eigen.

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <cusolverDn.h>

#include <thrust/execution_policy.h>
#include <thrust/functional.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/logical.h>
#include <thrust/reduce.h>
#include <thrust/transform.h>
#include <thrust/transform_reduce.h>

#include "loranull/backend/backend.hpp"
#include "loranull/backend/cuda/check.hpp"
#include "loranull/backend/cuda/device_matrix.hpp"
#include "loranull/backend/cuda/kernels.hpp"
#include "loranull/backend/cuda/nn_kernels.hpp"
#include "loranull/backend/nn.hpp"
#include "loranull/core/error.hpp"
#include "loranull/core/host_matrix.hpp"
#include "loranull/core/types.hpp"

namespace loranull {

/// Number of CUDA devices usable by this process; 0 (never an exception) when
/// there is no GPU, no driver, or a driver older than the runtime: then
/// cudaGetDeviceCount fails ("insufficient driver", "no device") or reports 0.
inline int cuda_device_count() noexcept {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
        (void)cudaGetLastError();  // clear the sticky error
        return 0;
    }
    return count > 0 ? count : 0;
}

namespace cuda_detail {

struct CublasDeleter {
    void operator()(cublasContext* h) const noexcept { (void)cublasDestroy(h); }
};
struct CusolverDeleter {
    void operator()(cusolverDnContext* h) const noexcept { (void)cusolverDnDestroy(h); }
};
struct CusolverParamsDeleter {
    void operator()(cusolverDnParams* p) const noexcept { (void)cusolverDnDestroyParams(p); }
};

/// The cudaDataType of a device scalar, for the 64-bit cuSOLVER API and GemmEx.
template <class T>
constexpr cudaDataType data_type() {
    if constexpr (std::is_same_v<T, float>) return CUDA_R_32F;
    else if constexpr (std::is_same_v<T, double>) return CUDA_R_64F;
    else if constexpr (std::is_same_v<T, __half>) return CUDA_R_16F;
    else return CUDA_R_16BF;
}

inline cublasOperation_t to_cublas(Op op) { return op == Op::none ? CUBLAS_OP_N : CUBLAS_OP_T; }

/// cuBLAS and the legacy cuSOLVER calls take int sizes: check at the boundary.
inline int to_int(Index value, const char* where) {
    require(value >= 0 && value <= INT_MAX, where, "size ", value, " does not fit the 32-bit int of cuBLAS/cuSOLVER");
    return static_cast<int>(value);
}

template <class>
inline constexpr bool always_false = false;

}  // namespace cuda_detail

/// The whole primitive set of backend.hpp, plus the neural-network kernels of
/// nn.hpp through the CudaNnKernels base (nn_kernels.hpp).
class CudaBackend : public CudaNnKernels<CudaBackend> {
public:
    /// Column-major, owning, stream-ordered device storage.
    template <class T>
    using Matrix = DeviceMatrix<T>;

    /// "cuda", for messages, files and benchmark labels.
    static constexpr const char* name() { return "cuda"; }

    /// A backend on CUDA device `device` (0-based). Throws loranull::error when
    /// that device does not exist (no GPU, driver too old, ordinal too large).
    explicit CudaBackend(int device = 0) : device_(device) {
        const char* where = "CudaBackend::CudaBackend";
        const int count = cuda_device_count();
        require(count > 0, where, "no CUDA device (cudaGetDeviceCount found none, or the driver is missing or too old)");
        require(device >= 0 && device < count, where, "device ", device, " requested, ", count,
                " CUDA device(s) visible");
        const cuda_detail::DeviceGuard guard(device_, where);
        stream_ = std::make_shared<const cuda_detail::Stream>(device_);
        cublasHandle_t blas = nullptr;
        LORANULL_CUBLAS_CHECK(cublasCreate(&blas), where);
        cublas_.reset(blas);
        LORANULL_CUBLAS_CHECK(cublasSetStream(blas, stream()), where);
        cusolverDnHandle_t solver = nullptr;
        LORANULL_CUSOLVER_CHECK(cusolverDnCreate(&solver), where);
        cusolver_.reset(solver);
        LORANULL_CUSOLVER_CHECK(cusolverDnSetStream(solver, stream()), where);
        cusolverDnParams_t params = nullptr;
        LORANULL_CUSOLVER_CHECK(cusolverDnCreateParams(&params), where);
        params_.reset(params);
        dev_info_ = cuda_detail::DeviceBuffer(sizeof(int), stream_);
        // Keep freed blocks in the device's stream-ordered pool instead of
        // returning them to the driver at every synchronisation (the default
        // release threshold is 0): temporaries of every primitive then cost a
        // pool lookup, not a cudaMalloc. trim_memory() hands them back.
        cudaMemPool_t pool = nullptr;
        LORANULL_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device_), where);
        std::uint64_t threshold = std::numeric_limits<std::uint64_t>::max();
        LORANULL_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold), where);
    }

    CudaBackend(const CudaBackend&) = delete;
    CudaBackend& operator=(const CudaBackend&) = delete;
    CudaBackend(CudaBackend&&) noexcept = default;
    CudaBackend& operator=(CudaBackend&&) noexcept = default;
    ~CudaBackend() = default;  // workspace, then handles, then (shared) stream

    int device() const { return device_; }
    cudaStream_t stream() const { return stream_ ? stream_->get() : nullptr; }
    const cuda_detail::StreamHandle& stream_handle() const { return stream_; }
    cublasHandle_t cublas() const { return cublas_.get(); }
    cusolverDnHandle_t cusolver() const { return cusolver_.get(); }

    /// Waits for everything enqueued on the backend's stream.
    void synchronize() const {
        LORANULL_CUDA_CHECK(cudaStreamSynchronize(stream()), "CudaBackend::synchronize");
    }

    /// Synchronises, then returns the memory the pool keeps cached to the driver.
    void trim_memory() const {
        const char* where = "CudaBackend::trim_memory";
        synchronize();
        cudaMemPool_t pool = nullptr;
        LORANULL_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device_), where);
        LORANULL_CUDA_CHECK(cudaMemPoolTrimTo(pool, 0), where);
    }

    // --- storage -------------------------------------------------------------

    /// rows x cols, uninitialised, on the backend's stream.
    template <cuda_detail::DeviceScalar T>
    Matrix<T> allocate(Index rows, Index cols) const {
        require(rows >= 0 && cols >= 0, "CudaBackend::allocate", "negative shape ", shape_string(rows, cols));
        const cuda_detail::DeviceGuard guard(device_, "CudaBackend::allocate");
        return Matrix<T>(rows, cols, stream_);
    }

    template <Real T>
    Matrix<T> zeros(Index rows, Index cols) const {
        const char* where = "CudaBackend::zeros";
        require(rows >= 0 && cols >= 0, where, "negative shape ", shape_string(rows, cols));
        const cuda_detail::DeviceGuard guard(device_, where);
        Matrix<T> out(rows, cols, stream_);
        if (out.size() > 0)  // all-zero bits are +0.0 in IEEE 754
            LORANULL_CUDA_CHECK(cudaMemsetAsync(out.data(), 0, bytes(out), stream()), where);
        return out;
    }

    /// Host -> device. Synchronises before returning, so the host matrix may be
    /// freed at once (a pageable source would otherwise have to outlive the copy).
    template <Real T>
    Matrix<T> upload(const HostMatrix<T>& host) const {
        const char* where = "CudaBackend::upload";
        const cuda_detail::DeviceGuard guard(device_, where);
        Matrix<T> out(host.rows(), host.cols(), stream_);
        if (out.size() > 0) {
            LORANULL_CUDA_CHECK(cudaMemcpyAsync(out.data(), host.data(), bytes(out), cudaMemcpyHostToDevice, stream()),
                                where);
            LORANULL_CUDA_CHECK(cudaStreamSynchronize(stream()), where);
        }
        return out;
    }

    /// Device -> host, after everything enqueued before it.
    template <Real T>
    HostMatrix<T> download(const Matrix<T>& a) const {
        const char* where = "CudaBackend::download";
        HostMatrix<T> host(a.rows(), a.cols());
        if (a.size() == 0) return host;
        const cuda_detail::DeviceGuard guard(device_, where);
        LORANULL_CUDA_CHECK(cudaMemcpyAsync(host.data(), a.data(), bytes(a), cudaMemcpyDeviceToHost, stream()), where);
        LORANULL_CUDA_CHECK(cudaStreamSynchronize(stream()), where);
        return host;
    }

    template <cuda_detail::DeviceScalar T>
    Matrix<T> block(const Matrix<T>& a, Index row0, Index col0, Index rows, Index cols) const {
        const char* where = "CudaBackend::block";
        require(row0 >= 0 && col0 >= 0 && rows >= 0 && cols >= 0 && row0 + rows <= a.rows() &&
                    col0 + cols <= a.cols(),
                where, "block of ", shape_string(rows, cols), " at (", row0, ", ", col0, ") does not fit a ",
                shape_string(a.rows(), a.cols()), " matrix");
        const cuda_detail::DeviceGuard guard(device_, where);
        Matrix<T> out(rows, cols, stream_);
        if (out.size() == 0) return out;
        // cols columns of rows contiguous entries, source pitch = a's leading dimension.
        LORANULL_CUDA_CHECK(cudaMemcpy2DAsync(out.data(), sizeof(T) * rows, a.data() + row0 + col0 * a.rows(),
                                              sizeof(T) * a.rows(), sizeof(T) * rows, cols,
                                              cudaMemcpyDeviceToDevice, stream()),
                            where);
        return out;
    }

    template <cuda_detail::DeviceScalar T>
    Matrix<T> select_columns(const Matrix<T>& a, const std::vector<Index>& which) const {
        const char* where = "CudaBackend::select_columns";
        for (Index j : which)
            require(j >= 0 && j < a.cols(), where, "column ", j, " of a ", shape_string(a.rows(), a.cols()), " matrix");
        const cuda_detail::DeviceGuard guard(device_, where);
        Matrix<T> out(a.rows(), static_cast<Index>(which.size()), stream_);
        if (out.size() == 0) return out;
        const auto indices = to_device(std::vector<std::int64_t>(which.begin(), which.end()), where);
        cuda_detail::for_each_index(
            out.size(),
            cuda_detail::GatherColumns<T>{out.data(), a.data(), static_cast<const std::int64_t*>(indices.data()), a.rows()},
            stream(), where);
        return out;
    }

    /// Copies A into out at (row0, col0): the inverse of block (A must fit).
    template <cuda_detail::DeviceScalar T>
    void set_block(Matrix<T>& out, Index row0, Index col0, const Matrix<T>& a) const {
        const char* where = "CudaBackend::set_block";
        require(row0 >= 0 && col0 >= 0 && row0 + a.rows() <= out.rows() && col0 + a.cols() <= out.cols(), where, "a ",
                shape_string(a.rows(), a.cols()), " block at (", row0, ", ", col0, ") does not fit a ",
                shape_string(out.rows(), out.cols()), " matrix");
        if (a.size() == 0) return;
        require(out.data() != a.data(), where, "out must not alias A");
        const cuda_detail::DeviceGuard guard(device_, where);
        LORANULL_CUDA_CHECK(cudaMemcpy2DAsync(out.data() + row0 + col0 * out.rows(), sizeof(T) * out.rows(), a.data(),
                                              sizeof(T) * a.rows(), sizeof(T) * a.rows(), a.cols(),
                                              cudaMemcpyDeviceToDevice, stream()),
                            where);
    }

    /// A^T, freshly allocated: cublas?geam, out = 1 * A^T + 0 * B with B = out
    /// (geam's documented in-place form). out is zeroed first, so that geam
    /// reads zeros, never stale pool memory that could hold NaN (0 * NaN = NaN),
    /// whether or not it references B when beta = 0.
    template <Real T>
    Matrix<T> transpose(const Matrix<T>& a) const {
        const char* where = "CudaBackend::transpose";
        const cuda_detail::DeviceGuard guard(device_, where);
        Matrix<T> out = zeros<T>(a.cols(), a.rows());
        if (out.size() == 0) return out;
        const int rows = cuda_detail::to_int(out.rows(), where), cols = cuda_detail::to_int(out.cols(), where);
        const int lda = cuda_detail::to_int(a.ld(), where), ldc = cuda_detail::to_int(out.ld(), where);
        const T one = T(1), zero = T(0);
        if constexpr (std::is_same_v<T, float>)
            LORANULL_CUBLAS_CHECK(cublasSgeam(cublas(), CUBLAS_OP_T, CUBLAS_OP_N, rows, cols, &one, a.data(), lda, &zero,
                                              out.data(), ldc, out.data(), ldc),
                                  where);
        else
            LORANULL_CUBLAS_CHECK(cublasDgeam(cublas(), CUBLAS_OP_T, CUBLAS_OP_N, rows, cols, &one, a.data(), lda, &zero,
                                              out.data(), ldc, out.data(), ldc),
                                  where);
        return out;
    }

    /// Elementwise conversion (float <-> double, and to/from __half and
    /// __nv_bfloat16 for the tensor-core covariance path).
    template <cuda_detail::DeviceScalar To, cuda_detail::DeviceScalar From>
    Matrix<To> convert(const Matrix<From>& a) const {
        const char* where = "CudaBackend::convert";
        const cuda_detail::DeviceGuard guard(device_, where);
        Matrix<To> out(a.rows(), a.cols(), stream_);
        cuda_detail::for_each_index(a.size(), cuda_detail::Convert<To, From>{out.data(), a.data()}, stream(), where);
        return out;
    }

    // --- products ------------------------------------------------------------

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
        const cuda_detail::DeviceGuard guard(device_, where);
        if (k == 0) {  // out = beta * out (beta = 0 ignores the old contents, NaN included)
            if (beta == T(0)) LORANULL_CUDA_CHECK(cudaMemsetAsync(out.data(), 0, bytes(out), stream()), where);
            else if (beta != T(1)) scale(beta, out);
            return;
        }
        // cuBLAS does not read C when beta == 0, so NaN in the old contents is ignored.
        const int im = cuda_detail::to_int(m, where), in = cuda_detail::to_int(n, where), ik = cuda_detail::to_int(k, where);
        const int lda = cuda_detail::to_int(a.ld(), where), ldb = cuda_detail::to_int(b.ld(), where), ldc = cuda_detail::to_int(out.ld(), where);
        const auto ta = cuda_detail::to_cublas(op_a), tb = cuda_detail::to_cublas(op_b);
        if constexpr (std::is_same_v<T, float>)
            LORANULL_CUBLAS_CHECK(cublasSgemm(cublas(), ta, tb, im, in, ik, &alpha, a.data(), lda, b.data(), ldb, &beta,
                                              out.data(), ldc),
                                  where);
        else
            LORANULL_CUBLAS_CHECK(cublasDgemm(cublas(), ta, tb, im, in, ik, &alpha, a.data(), lda, b.data(), ldb, &beta,
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
        const cuda_detail::DeviceGuard guard(device_, where);
        if constexpr (std::is_same_v<Tx, T>) {
            const int n = cuda_detail::to_int(x.rows(), where), k = cuda_detail::to_int(x.cols(), where);
            const int ldx = cuda_detail::to_int(x.ld(), where), ldc = cuda_detail::to_int(out.ld(), where);
            const T one = T(1);
            if constexpr (std::is_same_v<T, float>)
                LORANULL_CUBLAS_CHECK(cublasSsyrk(cublas(), CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, n, k, &alpha, x.data(),
                                                  ldx, &one, out.data(), ldc),
                                      where);
            else
                LORANULL_CUBLAS_CHECK(cublasDsyrk(cublas(), CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, n, k, &alpha, x.data(),
                                                  ldx, &one, out.data(), ldc),
                                      where);
        } else if constexpr (Real<Tx>) {
            // float into double (or double into float): convert a panel of
            // tokens at a time, which bounds the extra memory (n x panel of T)
            // and keeps the rank update wide enough for full ?syrk speed.
            const Index panel = std::max<Index>(256, std::min<Index>(4096, (Index(1) << 27) / x.rows()));
            for (Index start = 0; start < x.cols(); start += panel) {
                const Index width = std::min(panel, x.cols() - start);
                Matrix<T> converted(x.rows(), width, stream_);
                cuda_detail::for_each_index(converted.size(),
                                            cuda_detail::Convert<T, Tx>{converted.data(), x.data() + start * x.rows()},
                                            stream(), where);
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
        const cuda_detail::DeviceGuard guard(device_, where);
        const Index n = x.rows();
        const int k = cuda_detail::to_int(x.cols(), where), ldx = cuda_detail::to_int(x.ld(), where), ldc = cuda_detail::to_int(out.ld(), where);
        const float one = 1.0f;
        constexpr cudaDataType type = cuda_detail::data_type<Tx>();
        for (Index j0 = 0; j0 < n; j0 += block) {
            const Index width = std::min(block, n - j0);
            const int rows = cuda_detail::to_int(n - j0, where);
            LORANULL_CUBLAS_CHECK(cublasGemmEx(cublas(), CUBLAS_OP_N, CUBLAS_OP_T, rows, cuda_detail::to_int(width, where), k, &alpha,
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
        const cuda_detail::DeviceGuard guard(device_, where);
        cuda_detail::for_each_index(out.size(), cuda_detail::SymmetrizeLower<T>{out.data(), out.rows()}, stream(), where);
    }

    // --- decompositions ------------------------------------------------------

    /// All eigenpairs, ascending: cusolverDnXsyevd on a copy (lower triangle read).
    template <Real T>
    SymmetricEigen<T, Matrix<T>> symmetric_eigen(const Matrix<T>& a) const {
        const char* where = "CudaBackend::symmetric_eigen";
        require_square(a, where);
        SymmetricEigen<T, Matrix<T>> out;
        const Index n = a.rows();
        if (n == 0) {
            out.vectors = zeros<T>(0, 0);
            return out;
        }
        const cuda_detail::DeviceGuard guard(device_, where);
        out.vectors = clone(a);  // overwritten by the eigenvectors
        Matrix<T> values(n, 1, stream_);
        constexpr cudaDataType type = cuda_detail::data_type<T>();
        std::size_t device_bytes = 0, host_bytes = 0;
        LORANULL_CUSOLVER_CHECK(cusolverDnXsyevd_bufferSize(cusolver(), params(), CUSOLVER_EIG_MODE_VECTOR,
                                                            CUBLAS_FILL_MODE_LOWER, n, type, out.vectors.data(),
                                                            out.vectors.ld(), type, values.data(), type, &device_bytes,
                                                            &host_bytes),
                                where);
        reserve_workspace(device_bytes, host_bytes);
        LORANULL_CUSOLVER_CHECK(cusolverDnXsyevd(cusolver(), params(), CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n,
                                                 type, out.vectors.data(), out.vectors.ld(), type, values.data(), type,
                                                 workspace_.data(), device_bytes, host_workspace(), host_bytes,
                                                 dev_info()),
                                where);
        cuda_detail::check_dev_info(dev_info(), stream(), "cusolverDnXsyevd", where);
        out.values = download_vector(values, n, where);
        return out;
    }

    /// Pairs first .. first + count - 1 (0-based, ascending):
    /// cusolverDnXsyevdx with range 'I' (1-based il = first + 1, iu = first + count).
    template <Real T>
    SymmetricEigen<T, Matrix<T>> symmetric_eigen_range(const Matrix<T>& a, Index first, Index count) const {
        const char* where = "CudaBackend::symmetric_eigen_range";
        require_square(a, where);
        require(first >= 0 && count >= 0 && first + count <= a.rows(), where, "pairs ", first, " .. ", first + count - 1,
                " requested of a ", shape_string(a.rows(), a.cols()), " matrix");
        SymmetricEigen<T, Matrix<T>> out;
        const Index n = a.rows();
        if (count == 0) {
            out.vectors = zeros<T>(n, 0);
            return out;
        }
        const cuda_detail::DeviceGuard guard(device_, where);
        Matrix<T> work = clone(a);  // its first `found` columns become the eigenvectors
        Matrix<T> values(n, 1, stream_);
        constexpr cudaDataType type = cuda_detail::data_type<T>();
        T vl = T(0), vu = T(0);  // not referenced with range 'I'
        const std::int64_t il = first + 1, iu = first + count;
        std::int64_t found = 0;
        std::size_t device_bytes = 0, host_bytes = 0;
        LORANULL_CUSOLVER_CHECK(cusolverDnXsyevdx_bufferSize(cusolver(), params(), CUSOLVER_EIG_MODE_VECTOR,
                                                             CUSOLVER_EIG_RANGE_I, CUBLAS_FILL_MODE_LOWER, n, type,
                                                             work.data(), work.ld(), &vl, &vu, il, iu, &found, type,
                                                             values.data(), type, &device_bytes, &host_bytes),
                                where);
        reserve_workspace(device_bytes, host_bytes);
        LORANULL_CUSOLVER_CHECK(cusolverDnXsyevdx(cusolver(), params(), CUSOLVER_EIG_MODE_VECTOR, CUSOLVER_EIG_RANGE_I,
                                                  CUBLAS_FILL_MODE_LOWER, n, type, work.data(), work.ld(), &vl, &vu, il,
                                                  iu, &found, type, values.data(), type, workspace_.data(), device_bytes,
                                                  host_workspace(), host_bytes, dev_info()),
                                where);
        cuda_detail::check_dev_info(dev_info(), stream(), "cusolverDnXsyevdx", where);
        require(found == count, where, "cuSOLVER returned ", found, " pairs, expected ", count);
        out.values = download_vector(values, count, where);
        out.vectors = count == n ? std::move(work) : block(work, 0, 0, n, count);
        return out;
    }

    /// Thin SVD, p = min(m, n), singular values descending: cusolverDnXgesvd
    /// (jobu = jobvt = 'S'). gesvd needs m >= n; a wide A is decomposed as
    /// A^T = U' S V'^T, so A = V' S U'^T: U = V', V = U'.
    template <Real T>
    ThinSvd<T, Matrix<T>> thin_svd(const Matrix<T>& a) const {
        const char* where = "CudaBackend::thin_svd";
        const Index m = a.rows(), n = a.cols(), p = std::min(m, n);
        ThinSvd<T, Matrix<T>> out;
        if (p == 0) {
            out.U = zeros<T>(m, 0);
            out.V = zeros<T>(n, 0);
            return out;
        }
        const cuda_detail::DeviceGuard guard(device_, where);
        const bool wide = m < n;
        Matrix<T> work = wide ? transpose(a) : clone(a);  // tall: rows >= cols, destroyed by gesvd
        const Index tm = work.rows(), tn = work.cols();   // tn == p
        Matrix<T> u(tm, tn, stream_), vt(tn, tn, stream_), s(tn, 1, stream_);
        constexpr cudaDataType type = cuda_detail::data_type<T>();
        std::size_t device_bytes = 0, host_bytes = 0;
        LORANULL_CUSOLVER_CHECK(cusolverDnXgesvd_bufferSize(cusolver(), params(), 'S', 'S', tm, tn, type, work.data(),
                                                            work.ld(), type, s.data(), type, u.data(), u.ld(), type,
                                                            vt.data(), vt.ld(), type, &device_bytes, &host_bytes),
                                where);
        reserve_workspace(device_bytes, host_bytes);
        LORANULL_CUSOLVER_CHECK(cusolverDnXgesvd(cusolver(), params(), 'S', 'S', tm, tn, type, work.data(), work.ld(),
                                                 type, s.data(), type, u.data(), u.ld(), type, vt.data(), vt.ld(), type,
                                                 workspace_.data(), device_bytes, host_workspace(), host_bytes,
                                                 dev_info()),
                                where);
        cuda_detail::check_dev_info(dev_info(), stream(), "cusolverDnXgesvd", where);
        out.singular_values = download_vector(s, p, where);
        if (wide) {
            out.U = transpose(vt);   // m x m
            out.V = std::move(u);    // n x m
        } else {
            out.U = std::move(u);    // m x n
            out.V = transpose(vt);   // n x n
        }
        return out;
    }

    /// The m x min(m, n) Q of A = Q R: ?geqrf, then ?orgqr on the first
    /// min(m, n) columns.
    template <Real T>
    Matrix<T> thin_q(const Matrix<T>& a) const {
        const char* where = "CudaBackend::thin_q";
        const Index k = std::min(a.rows(), a.cols());
        if (k == 0) return zeros<T>(a.rows(), 0);
        const cuda_detail::DeviceGuard guard(device_, where);
        Matrix<T> q = clone(a);
        Matrix<T> tau(k, 1, stream_);
        const int m = cuda_detail::to_int(a.rows(), where), n = cuda_detail::to_int(a.cols(), where), ik = cuda_detail::to_int(k, where);
        const int lda = cuda_detail::to_int(q.ld(), where);
        int lwork_qr = 0, lwork_q = 0;
        if constexpr (std::is_same_v<T, float>) {
            LORANULL_CUSOLVER_CHECK(cusolverDnSgeqrf_bufferSize(cusolver(), m, n, q.data(), lda, &lwork_qr), where);
            LORANULL_CUSOLVER_CHECK(cusolverDnSorgqr_bufferSize(cusolver(), m, ik, ik, q.data(), lda, tau.data(), &lwork_q),
                                    where);
        } else {
            LORANULL_CUSOLVER_CHECK(cusolverDnDgeqrf_bufferSize(cusolver(), m, n, q.data(), lda, &lwork_qr), where);
            LORANULL_CUSOLVER_CHECK(cusolverDnDorgqr_bufferSize(cusolver(), m, ik, ik, q.data(), lda, tau.data(), &lwork_q),
                                    where);
        }
        const int lwork = std::max({lwork_qr, lwork_q, 1});
        reserve_workspace(sizeof(T) * static_cast<std::size_t>(lwork), 0);
        T* work = static_cast<T*>(workspace_.data());
        if constexpr (std::is_same_v<T, float>)
            LORANULL_CUSOLVER_CHECK(cusolverDnSgeqrf(cusolver(), m, n, q.data(), lda, tau.data(), work, lwork, dev_info()),
                                    where);
        else
            LORANULL_CUSOLVER_CHECK(cusolverDnDgeqrf(cusolver(), m, n, q.data(), lda, tau.data(), work, lwork, dev_info()),
                                    where);
        cuda_detail::check_dev_info(dev_info(), stream(), "cusolverDn?geqrf", where);
        if constexpr (std::is_same_v<T, float>)
            LORANULL_CUSOLVER_CHECK(cusolverDnSorgqr(cusolver(), m, ik, ik, q.data(), lda, tau.data(), work, lwork, dev_info()),
                                    where);
        else
            LORANULL_CUSOLVER_CHECK(cusolverDnDorgqr(cusolver(), m, ik, ik, q.data(), lda, tau.data(), work, lwork, dev_info()),
                                    where);
        cuda_detail::check_dev_info(dev_info(), stream(), "cusolverDn?orgqr", where);
        if (k == a.cols()) return q;
        return block(q, 0, 0, a.rows(), k);
    }

    // --- elementwise and reductions ------------------------------------------

    template <Real T>
    void scale(T alpha, Matrix<T>& out) const {
        if (out.size() == 0) return;
        const cuda_detail::DeviceGuard guard(device_, "CudaBackend::scale");
        thrust_call("CudaBackend::scale", [&] {
            thrust::transform(thrust::cuda::par_nosync.on(stream()), out.data(), out.data() + out.size(), out.data(),
                              cuda_detail::Scale<T>{alpha});
        });
        check_launch("CudaBackend::scale");
    }

    template <Real T>
    void axpy(T alpha, const Matrix<T>& a, Matrix<T>& out) const {
        const char* where = "CudaBackend::axpy";
        require(a.rows() == out.rows() && a.cols() == out.cols(), where, "A is ", shape_string(a.rows(), a.cols()),
                ", out is ", shape_string(out.rows(), out.cols()));
        if (out.size() == 0) return;
        const cuda_detail::DeviceGuard guard(device_, where);
        thrust_call(where, [&] {
            thrust::transform(thrust::cuda::par_nosync.on(stream()), a.data(), a.data() + a.size(), out.data(),
                              out.data(), cuda_detail::Axpy<T>{alpha});
        });
        check_launch(where);
    }

    template <Real T>
    void scale_columns(Matrix<T>& out, const std::vector<T>& factors) const {
        const char* where = "CudaBackend::scale_columns";
        require(static_cast<Index>(factors.size()) == out.cols(), where, factors.size(), " factors for a ",
                shape_string(out.rows(), out.cols()), " matrix");
        if (out.size() == 0) return;
        const cuda_detail::DeviceGuard guard(device_, where);
        const auto device_factors = to_device(factors, where);
        cuda_detail::for_each_index(
            out.size(), cuda_detail::ScaleColumns<T>{out.data(), static_cast<const T*>(device_factors.data()), out.rows()},
            stream(), where);
    }

    template <Real T>
    void scale_rows(Matrix<T>& out, const std::vector<T>& factors) const {
        const char* where = "CudaBackend::scale_rows";
        require(static_cast<Index>(factors.size()) == out.rows(), where, factors.size(), " factors for a ",
                shape_string(out.rows(), out.cols()), " matrix");
        if (out.size() == 0) return;
        const cuda_detail::DeviceGuard guard(device_, where);
        const auto device_factors = to_device(factors, where);
        cuda_detail::for_each_index(
            out.size(), cuda_detail::ScaleRows<T>{out.data(), static_cast<const T*>(device_factors.data()), out.rows()},
            stream(), where);
    }

    template <Real T>
    void add_to_diagonal(Matrix<T>& out, T alpha) const {
        const char* where = "CudaBackend::add_to_diagonal";
        const cuda_detail::DeviceGuard guard(device_, where);
        cuda_detail::for_each_index(std::min(out.rows(), out.cols()),
                                    cuda_detail::AddToDiagonal<T>{out.data(), out.ld(), alpha}, stream(), where);
    }

    template <Real T>
    T trace(const Matrix<T>& a) const {
        const char* where = "CudaBackend::trace";
        require_square(a, where);
        if (a.rows() == 0) return T(0);
        const cuda_detail::DeviceGuard guard(device_, where);
        const T sum = thrust_call(where, [&] {
            return thrust::transform_reduce(thrust::cuda::par.on(stream()), thrust::counting_iterator<Index>(0),
                                            thrust::counting_iterator<Index>(a.rows()),
                                            cuda_detail::DiagonalEntry<T>{a.data(), a.ld()}, T(0), thrust::plus<T>());
        });
        check_launch(where);
        return sum;
    }

    /// Signed maximum entry (float for 16-bit matrices).
    template <cuda_detail::DeviceScalar T>
    cuda_detail::accumulate_t<T> max_coeff(const Matrix<T>& a) const {
        const char* where = "CudaBackend::max_coeff";
        require(a.size() > 0, where, "empty matrix (", shape_string(a.rows(), a.cols()), ")");
        using A = cuda_detail::accumulate_t<T>;
        const cuda_detail::DeviceGuard guard(device_, where);
        const A result = thrust_call(where, [&] {
            return thrust::transform_reduce(thrust::cuda::par.on(stream()), a.data(), a.data() + a.size(),
                                            cuda_detail::ToAccumulate<T>{}, std::numeric_limits<A>::lowest(),
                                            cuda_detail::Maximum<A>{});
        });
        check_launch(where);
        return result;
    }

    /// sqrt(sum of squares), summed in T (float for 16-bit matrices), as Eigen's norm().
    template <cuda_detail::DeviceScalar T>
    cuda_detail::accumulate_t<T> frobenius_norm(const Matrix<T>& a) const {
        using A = cuda_detail::accumulate_t<T>;
        if (a.size() == 0) return A(0);
        const char* where = "CudaBackend::frobenius_norm";
        const cuda_detail::DeviceGuard guard(device_, where);
        const A sum = thrust_call(where, [&] {
            return thrust::transform_reduce(thrust::cuda::par.on(stream()), a.data(), a.data() + a.size(),
                                            cuda_detail::SquareAs<T>{}, A(0), thrust::plus<A>());
        });
        check_launch(where);
        return std::sqrt(sum);
    }

    /// No NaN, no Inf (true for an empty matrix).
    template <cuda_detail::DeviceScalar T>
    bool all_finite(const Matrix<T>& a) const {
        if (a.size() == 0) return true;
        const char* where = "CudaBackend::all_finite";
        const cuda_detail::DeviceGuard guard(device_, where);
        const bool any = thrust_call(where, [&] {
            return thrust::any_of(thrust::cuda::par.on(stream()), a.data(), a.data() + a.size(),
                                  cuda_detail::NotFinite<T>{});
        });
        check_launch(where);
        return !any;
    }

private:
    template <class T>
    static std::size_t bytes(const Matrix<T>& a) {
        return static_cast<std::size_t>(a.size()) * sizeof(T);
    }

    template <class M>
    static void require_square(const M& a, const char* where) {
        require(a.rows() == a.cols(), where, "matrix is ", shape_string(a.rows(), a.cols()), ", expected square");
    }

    static void check_launch(const char* where) { LORANULL_CUDA_CHECK(cudaGetLastError(), where); }

    /// Runs a Thrust call, turning what Thrust throws (thrust::system_error for
    /// CUDA failures, bad_alloc for its temporary storage) into loranull::error.
    template <class F>
    static auto thrust_call(const char* where, F&& f) -> decltype(f()) {
        try {
            return f();
        } catch (const loranull::error&) {
            throw;
        } catch (const std::exception& e) {
            fail(where, "Thrust failed: ", e.what());
        }
    }

    cusolverDnParams_t params() const { return params_.get(); }
    int* dev_info() const { return static_cast<int*>(dev_info_.data()); }
    void* host_workspace() const { return host_workspace_.empty() ? nullptr : host_workspace_.data(); }

    /// A copy of `a` on the backend's stream.
    template <class T>
    Matrix<T> clone(const Matrix<T>& a) const {
        Matrix<T> out(a.rows(), a.cols(), stream_);
        if (a.size() > 0)
            LORANULL_CUDA_CHECK(cudaMemcpyAsync(out.data(), a.data(), bytes(a), cudaMemcpyDeviceToDevice, stream()),
                                "CudaBackend (copy)");
        return out;
    }

    /// A small host vector copied into a fresh device buffer (synchronised, so
    /// the pageable source may go away).
    template <class T>
    cuda_detail::DeviceBuffer to_device(const std::vector<T>& values, const char* where) const {
        cuda_detail::DeviceBuffer buffer(values.size() * sizeof(T), stream_);
        if (!values.empty()) {
            LORANULL_CUDA_CHECK(cudaMemcpyAsync(buffer.data(), values.data(), buffer.bytes(), cudaMemcpyHostToDevice,
                                                stream()),
                                where);
            LORANULL_CUDA_CHECK(cudaStreamSynchronize(stream()), where);
        }
        return buffer;
    }

    /// The first `count` entries of a device column, on the host.
    template <class T>
    std::vector<T> download_vector(const Matrix<T>& v, Index count, const char* where) const {
        std::vector<T> host(static_cast<std::size_t>(count));
        if (count == 0) return host;
        LORANULL_CUDA_CHECK(cudaMemcpyAsync(host.data(), v.data(), sizeof(T) * host.size(), cudaMemcpyDeviceToHost,
                                            stream()),
                            where);
        LORANULL_CUDA_CHECK(cudaStreamSynchronize(stream()), where);
        return host;
    }

    /// Grows the cuSOLVER workspaces (device: stream-ordered; host: a vector).
    void reserve_workspace(std::size_t device_bytes, std::size_t host_bytes) const {
        workspace_.reserve(std::max<std::size_t>(device_bytes, 1), stream_);
        if (host_workspace_.size() < host_bytes) host_workspace_.resize(host_bytes);
    }

    // Declaration order is destruction order reversed: the workspaces go first,
    // then the library handles, and the stream last (shared with the matrices).
    int device_ = 0;
    cuda_detail::StreamHandle stream_;
    std::unique_ptr<cublasContext, cuda_detail::CublasDeleter> cublas_;
    std::unique_ptr<cusolverDnContext, cuda_detail::CusolverDeleter> cusolver_;
    std::unique_ptr<cusolverDnParams, cuda_detail::CusolverParamsDeleter> params_;
    cuda_detail::DeviceBuffer dev_info_;                  // one int: cuSOLVER's devInfo
    mutable cuda_detail::DeviceBuffer workspace_;         // cuSOLVER device workspace, grows
    mutable std::vector<unsigned char> host_workspace_;   // cuSOLVER host workspace, grows
};

static_assert(Backend<CudaBackend>, "CudaBackend must provide the whole primitive set");
static_assert(NnBackend<CudaBackend>, "CudaBackend must provide every neural-network kernel");

}  // namespace loranull
