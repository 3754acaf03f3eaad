#pragma once
// What every part of the CUDA backend shares: device discovery
// (cuda_device_count), the small cuBLAS/cuSOLVER helpers, and CudaContext, the
// state one CudaBackend owns: the device, one non-blocking stream, one cuBLAS
// and one cuSOLVER handle bound to that stream, a cuSOLVER params object and
// devInfo word, and the growing cuSOLVER workspaces.
//
// The primitives themselves live in the CRTP bases of CudaBackend
// (storage.hpp, products.hpp, decompositions.hpp, elementwise.hpp,
// nn_kernels.hpp): they reach this state through their friendship here, so
// that none of it becomes part of CudaBackend's public interface.
// Included only from .cu translation units.

#include <algorithm>
#include <climits>
#include <cstdint>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <cusolverDn.h>

#include "loranull/backend/cuda/check.hpp"
#include "loranull/backend/cuda/device_matrix.hpp"
#include "loranull/backend/cuda/kernels.hpp"
#include "loranull/backend/cuda/nn_launches.hpp"
#include "loranull/core/error.hpp"
#include "loranull/core/host_matrix.hpp"
#include "loranull/core/types.hpp"

namespace loranull {

template <class Bk> class CudaStorage;
template <class Bk> class CudaProducts;
template <class Bk> class CudaDecompositions;
template <class Bk> class CudaElementwise;
template <class Bk, template <class> class MatrixOf> class CudaNnKernels;

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

/// Thrust's temporary storage (its reductions' scratch) from the stream-ordered
/// pool: cudaMallocAsync / cudaFreeAsync on the backend's stream. Thrust's
/// default, plain cudaMalloc / cudaFree, synchronises the whole device at
/// every reduction (every Covariance::add's finiteness check, every norm).
/// Used as thrust::cuda::par(allocator).on(stream), one allocator per call.
struct StreamOrderedAllocator {
    using value_type = char;
    cudaStream_t stream;

    char* allocate(std::ptrdiff_t bytes) {
        void* p = nullptr;
        LORANULL_CUDA_CHECK(cudaMallocAsync(&p, static_cast<std::size_t>(bytes), stream),
                            "CudaBackend (Thrust temporary storage)");
        return static_cast<char*>(p);
    }
    void deallocate(char* p, std::size_t) {
        // A failure here surfaces at the stream's next checked call.
        (void)cudaFreeAsync(p, stream);
    }
};

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


/// The state of one CudaBackend (see the file comment). RAII, movable, not
/// copyable; its members are destroyed workspace first, then handles, then its
/// share of the stream (which the matrices allocated on it share).
class CudaContext {
public:
    /// Throws loranull::error when device `device` does not exist (no GPU,
    /// driver too old, ordinal too large).
    explicit CudaContext(int device) : device_(device) {
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

    CudaContext(const CudaContext&) = delete;
    CudaContext& operator=(const CudaContext&) = delete;
    CudaContext(CudaContext&&) noexcept = default;
    CudaContext& operator=(CudaContext&&) noexcept = default;
    ~CudaContext() = default;

    int device() const { return device_; }
    cudaStream_t stream() const { return stream_ ? stream_->get() : nullptr; }
    const cuda_detail::StreamHandle& stream_handle() const { return stream_; }
    cublasHandle_t cublas() const { return cublas_.get(); }
    cusolverDnHandle_t cusolver() const { return cusolver_.get(); }

    /// The most device memory the stream-ordered pool has held at once since
    /// the device's first allocation (cudaMemPoolAttrUsedMemHigh): every
    /// DeviceMatrix and temporary of the backend, not cuBLAS/cuSOLVER handles.
    std::int64_t peak_device_memory_bytes() const {
        const char* where = "CudaBackend::peak_device_memory_bytes";
        cudaMemPool_t pool = nullptr;
        LORANULL_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device_), where);
        std::uint64_t high = 0;
        LORANULL_CUDA_CHECK(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &high), where);
        return static_cast<std::int64_t>(high);
    }

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

private:
    template <class> friend class loranull::CudaStorage;
    template <class> friend class loranull::CudaProducts;
    template <class> friend class loranull::CudaDecompositions;
    template <class> friend class loranull::CudaElementwise;
    template <class, template <class> class> friend class loranull::CudaNnKernels;

    // --- what the CRTP bases use ---------------------------------------------

    /// Makes the backend's device current until the guard goes out of scope.
    DeviceGuard make_current(const char* where) const { return DeviceGuard(device_, where); }

    /// A matrix allocated on this backend's stream (else reallocate, so that
    /// the stream ordering of its frees stays this backend's).
    template <class T>
    bool owns(const DeviceMatrix<T>& m) const {
        return m.stream_handle() == stream_;
    }

    cuda_nn::DeviceLaunch launcher(const char* where) const { return {stream(), where}; }

    void* workspace() const { return workspace_.data(); }

    template <class T>
    static std::size_t bytes(const DeviceMatrix<T>& a) {
        return static_cast<std::size_t>(a.size()) * sizeof(T);
    }

    template <class M>
    static void require_square(const M& a, const char* where) {
        require(a.rows() == a.cols(), where, "matrix is ", shape_string(a.rows(), a.cols()), ", expected square");
    }

    cusolverDnParams_t params() const { return params_.get(); }
    int* dev_info() const { return static_cast<int*>(dev_info_.data()); }
    void* host_workspace() const { return host_workspace_.empty() ? nullptr : host_workspace_.data(); }

    /// A copy of `a` on the backend's stream.
    template <class T>
    DeviceMatrix<T> clone(const DeviceMatrix<T>& a) const {
        DeviceMatrix<T> out(a.rows(), a.cols(), stream_);
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
    std::vector<T> download_vector(const DeviceMatrix<T>& v, Index count, const char* where) const {
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

}  // namespace cuda_detail

}  // namespace loranull
