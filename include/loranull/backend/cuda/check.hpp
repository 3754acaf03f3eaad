#pragma once
// Status checks for the CUDA runtime, cuBLAS and cuSOLVER: every call the CUDA
// backend makes goes through one of the LORANULL_CUDA_CHECK, LORANULL_CUBLAS_CHECK
// or LORANULL_CUSOLVER_CHECK macros, and a failure throws loranull::error naming
// the call (its source text), the status and the status string, e.g.
//
//   "loranull::CudaBackend::symmetric_eigen: cusolverDnXsyevd(...) failed:
//    CUSOLVER_STATUS_INVALID_VALUE (3)"
//
// cuSOLVER reports numerical failures through devInfo, an int in device memory
// written asynchronously: check_dev_info() reads it back (a stream sync) and
// throws when it is not 0. Included only from .cu translation units.

#include <cstdint>
#include <string>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cusolverDn.h>

#include "loranull/core/error.hpp"

namespace loranull::cuda_detail {

/// "cusolverDnXsyevd(...)" from the call's source text: the name, not the
/// arguments (they are expressions, not values, and only clutter the message).
inline std::string call_name(const char* call) {
    const std::string text(call);
    const auto paren = text.find('(');
    return paren == std::string::npos ? text : text.substr(0, paren) + "(...)";
}

inline const char* cusolver_status_name(cusolverStatus_t status) {
    switch (status) {
        case CUSOLVER_STATUS_SUCCESS: return "CUSOLVER_STATUS_SUCCESS";
        case CUSOLVER_STATUS_NOT_INITIALIZED: return "CUSOLVER_STATUS_NOT_INITIALIZED";
        case CUSOLVER_STATUS_ALLOC_FAILED: return "CUSOLVER_STATUS_ALLOC_FAILED";
        case CUSOLVER_STATUS_INVALID_VALUE: return "CUSOLVER_STATUS_INVALID_VALUE";
        case CUSOLVER_STATUS_ARCH_MISMATCH: return "CUSOLVER_STATUS_ARCH_MISMATCH";
        case CUSOLVER_STATUS_MAPPING_ERROR: return "CUSOLVER_STATUS_MAPPING_ERROR";
        case CUSOLVER_STATUS_EXECUTION_FAILED: return "CUSOLVER_STATUS_EXECUTION_FAILED";
        case CUSOLVER_STATUS_INTERNAL_ERROR: return "CUSOLVER_STATUS_INTERNAL_ERROR";
        case CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED: return "CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED";
        case CUSOLVER_STATUS_NOT_SUPPORTED: return "CUSOLVER_STATUS_NOT_SUPPORTED";
        case CUSOLVER_STATUS_ZERO_PIVOT: return "CUSOLVER_STATUS_ZERO_PIVOT";
        case CUSOLVER_STATUS_INVALID_LICENSE: return "CUSOLVER_STATUS_INVALID_LICENSE";
        case CUSOLVER_STATUS_INVALID_WORKSPACE: return "CUSOLVER_STATUS_INVALID_WORKSPACE";
        default: return "CUSOLVER_STATUS_<other>";
    }
}

/// Throws loranull::error("loranull::<where>: <call> failed: <name> (<code>): <string>").
inline void check_cuda(cudaError_t status, const char* call, const char* where) {
    if (status == cudaSuccess) return;
    // The error is also sticky in the runtime's "last error": clear it so that a
    // later, unrelated check does not report it a second time.
    (void)cudaGetLastError();
    fail(where, call_name(call), " failed: ", cudaGetErrorName(status), " (", static_cast<int>(status),
         "): ", cudaGetErrorString(status));
}

inline void check_cublas(cublasStatus_t status, const char* call, const char* where) {
    if (status == CUBLAS_STATUS_SUCCESS) return;
    fail(where, call_name(call), " failed: ", cublasGetStatusName(status), " (", static_cast<int>(status),
         "): ", cublasGetStatusString(status));
}

inline void check_cusolver(cusolverStatus_t status, const char* call, const char* where) {
    if (status == CUSOLVER_STATUS_SUCCESS) return;
    fail(where, call_name(call), " failed: ", cusolver_status_name(status), " (", static_cast<int>(status), ")");
}

/// Reads cuSOLVER's devInfo (one int on the device, written on `stream`) and
/// throws unless it is 0. LAPACK's convention: info < 0 means argument -info
/// was illegal (a bug here, not in the caller's data); info > 0 means the
/// algorithm did not converge or the input was degenerate (routine-specific).
inline void check_dev_info(const int* dev_info, cudaStream_t stream, const char* routine, const char* where) {
    int info = 0;
    check_cuda(cudaMemcpyAsync(&info, dev_info, sizeof(int), cudaMemcpyDeviceToHost, stream),
               "cudaMemcpyAsync(devInfo)", where);
    check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize", where);
    if (info < 0) fail(where, routine, " reported devInfo = ", info, ": parameter ", -info, " had an illegal value");
    if (info > 0)
        fail(where, routine, " reported devInfo = ", info,
             " (did not converge, or the input is degenerate: NaN/Inf or a breakdown)");
}

}  // namespace loranull::cuda_detail

/// Check a CUDA runtime call; `where` (a const char*) names the public entry.
#define LORANULL_CUDA_CHECK(call, where) ::loranull::cuda_detail::check_cuda((call), #call, (where))
/// Check a cuBLAS call.
#define LORANULL_CUBLAS_CHECK(call, where) ::loranull::cuda_detail::check_cublas((call), #call, (where))
/// Check a cuSOLVER call.
#define LORANULL_CUSOLVER_CHECK(call, where) ::loranull::cuda_detail::check_cusolver((call), #call, (where))
