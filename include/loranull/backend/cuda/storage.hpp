#pragma once
// The CUDA backend's storage primitives: allocation, host <-> device copies,
// blocks, column selection, transposes and conversions, all stream-ordered
// on the backend's stream (cudaMallocAsync, cudaMemcpyAsync, cudaMemcpy2DAsync,
// cublas?geam, the conversion kernel of kernels.hpp).
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
#include "loranull/core/host_matrix.hpp"
#include "loranull/core/types.hpp"

namespace loranull {

template <class Bk>
class CudaStorage {
    template <class T>
    using Matrix = DeviceMatrix<T>;

public:
    /// rows x cols, uninitialised, on the backend's stream.
    template <cuda_detail::DeviceScalar T>
    Matrix<T> allocate(Index rows, Index cols) const {
        require(rows >= 0 && cols >= 0, "CudaBackend::allocate", "negative shape ", shape_string(rows, cols));
        const cuda_detail::DeviceGuard guard(self().device(), "CudaBackend::allocate");
        return Matrix<T>(rows, cols, self().stream_handle());
    }

    template <Real T>
    Matrix<T> zeros(Index rows, Index cols) const {
        const char* where = "CudaBackend::zeros";
        require(rows >= 0 && cols >= 0, where, "negative shape ", shape_string(rows, cols));
        const cuda_detail::DeviceGuard guard(self().device(), where);
        Matrix<T> out(rows, cols, self().stream_handle());
        if (out.size() > 0)  // all-zero bits are +0.0 in IEEE 754
            LORANULL_CUDA_CHECK(cudaMemsetAsync(out.data(), 0, self().bytes(out), self().stream()), where);
        return out;
    }

    /// Host -> device. Synchronises before returning, so the host matrix may be
    /// freed at once (a pageable source would otherwise have to outlive the copy).
    template <Real T>
    Matrix<T> upload(const HostMatrix<T>& host) const {
        const char* where = "CudaBackend::upload";
        const cuda_detail::DeviceGuard guard(self().device(), where);
        Matrix<T> out(host.rows(), host.cols(), self().stream_handle());
        if (out.size() > 0) {
            LORANULL_CUDA_CHECK(cudaMemcpyAsync(out.data(), host.data(), self().bytes(out), cudaMemcpyHostToDevice, self().stream()),
                                where);
            LORANULL_CUDA_CHECK(cudaStreamSynchronize(self().stream()), where);
        }
        return out;
    }

    /// Device -> host, after everything enqueued before it.
    template <Real T>
    HostMatrix<T> download(const Matrix<T>& a) const {
        const char* where = "CudaBackend::download";
        HostMatrix<T> host(a.rows(), a.cols());
        if (a.size() == 0) return host;
        const cuda_detail::DeviceGuard guard(self().device(), where);
        LORANULL_CUDA_CHECK(cudaMemcpyAsync(host.data(), a.data(), self().bytes(a), cudaMemcpyDeviceToHost, self().stream()), where);
        LORANULL_CUDA_CHECK(cudaStreamSynchronize(self().stream()), where);
        return host;
    }

    template <cuda_detail::DeviceScalar T>
    Matrix<T> block(const Matrix<T>& a, Index row0, Index col0, Index rows, Index cols) const {
        const char* where = "CudaBackend::block";
        require(row0 >= 0 && col0 >= 0 && rows >= 0 && cols >= 0 && row0 + rows <= a.rows() &&
                    col0 + cols <= a.cols(),
                where, "block of ", shape_string(rows, cols), " at (", row0, ", ", col0, ") does not fit a ",
                shape_string(a.rows(), a.cols()), " matrix");
        const cuda_detail::DeviceGuard guard(self().device(), where);
        Matrix<T> out(rows, cols, self().stream_handle());
        if (out.size() == 0) return out;
        // cols columns of rows contiguous entries, source pitch = a's leading dimension.
        LORANULL_CUDA_CHECK(cudaMemcpy2DAsync(out.data(), sizeof(T) * rows, a.data() + row0 + col0 * a.rows(),
                                              sizeof(T) * a.rows(), sizeof(T) * rows, cols,
                                              cudaMemcpyDeviceToDevice, self().stream()),
                            where);
        return out;
    }

    template <cuda_detail::DeviceScalar T>
    Matrix<T> select_columns(const Matrix<T>& a, const std::vector<Index>& which) const {
        const char* where = "CudaBackend::select_columns";
        for (Index j : which)
            require(j >= 0 && j < a.cols(), where, "column ", j, " of a ", shape_string(a.rows(), a.cols()), " matrix");
        const cuda_detail::DeviceGuard guard(self().device(), where);
        Matrix<T> out(a.rows(), static_cast<Index>(which.size()), self().stream_handle());
        if (out.size() == 0) return out;
        const auto indices = self().to_device(std::vector<std::int64_t>(which.begin(), which.end()), where);
        cuda_detail::for_each_index(
            out.size(),
            cuda_detail::GatherColumns<T>{out.data(), a.data(), static_cast<const std::int64_t*>(indices.data()), a.rows()},
            self().stream(), where);
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
        const cuda_detail::DeviceGuard guard(self().device(), where);
        LORANULL_CUDA_CHECK(cudaMemcpy2DAsync(out.data() + row0 + col0 * out.rows(), sizeof(T) * out.rows(), a.data(),
                                              sizeof(T) * a.rows(), sizeof(T) * a.rows(), a.cols(),
                                              cudaMemcpyDeviceToDevice, self().stream()),
                            where);
    }

    /// A^T, freshly allocated: cublas?geam, out = 1 * A^T + 0 * B with B = out
    /// (geam's documented in-place form). out is zeroed first, so that geam
    /// reads zeros, never stale pool memory that could hold NaN (0 * NaN = NaN),
    /// whether or not it references B when beta = 0.
    template <Real T>
    Matrix<T> transpose(const Matrix<T>& a) const {
        const char* where = "CudaBackend::transpose";
        const cuda_detail::DeviceGuard guard(self().device(), where);
        Matrix<T> out = zeros<T>(a.cols(), a.rows());
        if (out.size() == 0) return out;
        const int rows = cuda_detail::to_int(out.rows(), where), cols = cuda_detail::to_int(out.cols(), where);
        const int lda = cuda_detail::to_int(a.ld(), where), ldc = cuda_detail::to_int(out.ld(), where);
        const T one = T(1), zero = T(0);
        if constexpr (std::is_same_v<T, float>)
            LORANULL_CUBLAS_CHECK(cublasSgeam(self().cublas(), CUBLAS_OP_T, CUBLAS_OP_N, rows, cols, &one, a.data(), lda, &zero,
                                              out.data(), ldc, out.data(), ldc),
                                  where);
        else
            LORANULL_CUBLAS_CHECK(cublasDgeam(self().cublas(), CUBLAS_OP_T, CUBLAS_OP_N, rows, cols, &one, a.data(), lda, &zero,
                                              out.data(), ldc, out.data(), ldc),
                                  where);
        return out;
    }

    /// Elementwise conversion (float <-> double, and to/from __half and
    /// __nv_bfloat16 for the tensor-core covariance path).
    template <cuda_detail::DeviceScalar To, cuda_detail::DeviceScalar From>
    Matrix<To> convert(const Matrix<From>& a) const {
        const char* where = "CudaBackend::convert";
        const cuda_detail::DeviceGuard guard(self().device(), where);
        Matrix<To> out(a.rows(), a.cols(), self().stream_handle());
        cuda_detail::for_each_index(a.size(), cuda_detail::Convert<To, From>{out.data(), a.data()}, self().stream(), where);
        return out;
    }

private:
    const Bk& self() const { return static_cast<const Bk&>(*this); }
};

}  // namespace loranull
