#pragma once
// Device storage for the CUDA backend: a shared CUDA stream, a raw byte buffer,
// and DeviceMatrix<T>, the backend's owning column-major matrix type.
//
// Stream-ordered memory. Every allocation, copy and free is issued on the
// stream the matrix lives on (cudaMallocAsync / cudaMemcpyAsync /
// cudaFreeAsync), so it is ordered with the backend's kernels, cuBLAS and
// cuSOLVER calls on that stream without any device-wide synchronisation: a
// temporary freed while a kernel still reads it is only released after that
// kernel, and a copy made by generic code (`Matrix c = sum_;`) sees every
// write enqueued before it.
//
// Stream lifetime. The stream is owned jointly (std::shared_ptr) by the
// backend that created it and by every matrix allocated on it, so a matrix
// may outlive its backend (a result returned from a function that made a
// local CudaBackend) and still free itself safely.
//
// One stream per matrix. A matrix is meant to be used with the backend that
// made it. Using it on another backend's stream needs the caller to order the
// two streams (synchronise, or an event), exactly as with two PyTorch streams.
//
// Included only from .cu translation units.

#include <cstddef>
#include <memory>
#include <utility>

#include <cuda_runtime_api.h>

#include "loranull/backend/cuda/check.hpp"
#include "loranull/core/error.hpp"
#include "loranull/core/types.hpp"

namespace loranull {

namespace cuda_detail {

/// A non-blocking CUDA stream on one device, destroyed with its last owner.
/// (cudaStreamDestroy returns at once; work still queued completes first.)
class Stream {
public:
    explicit Stream(int device) : device_(device) {
        const char* where = "CudaBackend::CudaBackend";
        LORANULL_CUDA_CHECK(cudaSetDevice(device), where);
        // Non-blocking: no implicit synchronisation with the legacy default
        // stream (stream 0) that other libraries in the process may use.
        LORANULL_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), where);
    }
    ~Stream() {
        if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
    }
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;

    cudaStream_t get() const { return stream_; }
    int device() const { return device_; }

private:
    int device_ = 0;
    cudaStream_t stream_ = nullptr;
};

using StreamHandle = std::shared_ptr<const Stream>;

/// Makes `device` current for the lifetime of the guard (kernels and library
/// calls go to the current device); restores the previous one after.
class DeviceGuard {
public:
    DeviceGuard(int device, const char* where) {
        LORANULL_CUDA_CHECK(cudaGetDevice(&previous_), where);
        if (previous_ != device) LORANULL_CUDA_CHECK(cudaSetDevice(device), where);
        else previous_ = -1;
    }
    ~DeviceGuard() {
        if (previous_ >= 0) (void)cudaSetDevice(previous_);
    }
    DeviceGuard(const DeviceGuard&) = delete;
    DeviceGuard& operator=(const DeviceGuard&) = delete;

private:
    int previous_ = -1;
};

/// `bytes` of uninitialised device memory on a stream; stream-ordered
/// allocation and free. The building block of DeviceMatrix and of the
/// backend's reusable workspace.
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    DeviceBuffer(std::size_t bytes, StreamHandle stream) : stream_(std::move(stream)), bytes_(bytes) {
        if (bytes_ > 0) {
            require(stream_ != nullptr, "DeviceBuffer", "allocation of ", bytes_, " bytes without a stream");
            LORANULL_CUDA_CHECK(cudaMallocAsync(&data_, bytes_, stream_->get()), "DeviceBuffer");
        }
    }
    ~DeviceBuffer() { release(); }

    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    DeviceBuffer(DeviceBuffer&& other) noexcept
        : stream_(std::move(other.stream_)), data_(std::exchange(other.data_, nullptr)),
          bytes_(std::exchange(other.bytes_, 0)) {}
    DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
        if (this != &other) {
            release();
            stream_ = std::move(other.stream_);
            data_ = std::exchange(other.data_, nullptr);
            bytes_ = std::exchange(other.bytes_, 0);
        }
        return *this;
    }

    void* data() const { return data_; }
    std::size_t bytes() const { return bytes_; }
    const StreamHandle& stream_handle() const { return stream_; }

    /// Makes the buffer at least `bytes` long; old contents are not kept.
    void reserve(std::size_t bytes, const StreamHandle& stream) {
        if (bytes <= bytes_ && stream_ == stream) return;
        DeviceBuffer grown(bytes, stream);
        *this = std::move(grown);
    }

private:
    void release() noexcept {
        // A destructor must not throw; a failing free (driver shutting down at
        // process exit) leaks at worst.
        if (data_ != nullptr && stream_ != nullptr) (void)cudaFreeAsync(data_, stream_->get());
        data_ = nullptr;
        bytes_ = 0;
    }

    StreamHandle stream_;     // shared with the backend; keeps the stream alive
    void* data_ = nullptr;    // bytes_ of device memory, or null
    std::size_t bytes_ = 0;
};

}  // namespace cuda_detail

/// A non-owning view of a column-major block in device memory: element (i, j)
/// is data[i + j * ld].
template <class T>
struct DeviceView {
    T* data = nullptr;
    Index rows = 0;
    Index cols = 0;
    Index ld = 1;  // >= max(1, rows)
};

/// Owning, column-major rows x cols matrix of T in device memory (T is float,
/// double, __half or __nv_bfloat16). Copies are deep and stream-ordered; a
/// default-constructed matrix is empty (0 x 0) and touches no CUDA API.
template <class T>
class DeviceMatrix {
public:
    using Scalar = T;

    DeviceMatrix() = default;

    /// rows x cols, uninitialised, allocated on `stream`.
    DeviceMatrix(Index rows, Index cols, cuda_detail::StreamHandle stream)
        : rows_(checked(rows, cols)), cols_(cols),
          buffer_(static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols) * sizeof(T), std::move(stream)) {}

    /// A deep copy, allocated and copied on `other`'s stream (so it is ordered
    /// after every write to `other` already enqueued there).
    DeviceMatrix(const DeviceMatrix& other)
        : rows_(other.rows_), cols_(other.cols_), buffer_(other.buffer_.bytes(), other.buffer_.stream_handle()) {
        copy_from(other);
    }

    DeviceMatrix& operator=(const DeviceMatrix& other) {
        if (this == &other) return *this;
        if (rows_ == other.rows_ && cols_ == other.cols_ && buffer_.stream_handle() == other.buffer_.stream_handle()) {
            copy_from(other);  // same shape, same stream: reuse the storage
        } else {
            DeviceMatrix copy(other);
            *this = std::move(copy);
        }
        return *this;
    }

    DeviceMatrix(DeviceMatrix&& other) noexcept
        : rows_(std::exchange(other.rows_, 0)), cols_(std::exchange(other.cols_, 0)), buffer_(std::move(other.buffer_)) {}

    DeviceMatrix& operator=(DeviceMatrix&& other) noexcept {
        if (this != &other) {
            rows_ = std::exchange(other.rows_, 0);
            cols_ = std::exchange(other.cols_, 0);
            buffer_ = std::move(other.buffer_);
        }
        return *this;
    }

    Index rows() const { return rows_; }
    Index cols() const { return cols_; }
    Index size() const { return rows_ * cols_; }
    bool empty() const { return size() == 0; }
    /// Leading dimension as BLAS wants it: max(1, rows).
    Index ld() const { return rows_ > 0 ? rows_ : 1; }

    /// Device pointer to element (0, 0); null when empty.
    T* data() { return static_cast<T*>(buffer_.data()); }
    const T* data() const { return static_cast<const T*>(buffer_.data()); }

    /// The stream the matrix lives on (null for a default-constructed matrix).
    cudaStream_t stream() const { return buffer_.stream_handle() ? buffer_.stream_handle()->get() : nullptr; }
    const cuda_detail::StreamHandle& stream_handle() const { return buffer_.stream_handle(); }

    DeviceView<T> view() { return {data(), rows_, cols_, ld()}; }
    DeviceView<const T> view() const { return {data(), rows_, cols_, ld()}; }

private:
    static Index checked(Index rows, Index cols) {
        require(rows >= 0 && cols >= 0, "DeviceMatrix", "negative shape ", shape_string(rows, cols));
        return rows;
    }

    void copy_from(const DeviceMatrix& other) {
        if (other.buffer_.bytes() == 0) return;
        LORANULL_CUDA_CHECK(cudaMemcpyAsync(buffer_.data(), other.buffer_.data(), other.buffer_.bytes(),
                                            cudaMemcpyDeviceToDevice, stream()),
                            "DeviceMatrix (copy)");
    }

    Index rows_ = 0;
    Index cols_ = 0;
    cuda_detail::DeviceBuffer buffer_;  // rows_ * cols_ * sizeof(T) bytes, column-major
};

}  // namespace loranull
