// The parts of the CUDA backend that need no GPU, so they run (and must pass)
// on every machine that builds the CUDA targets, CI without a GPU included:
// device discovery never throws, status checks turn every failure into a
// loranull::error naming the call and the status, DeviceMatrix's empty state
// touches no CUDA API, and a backend on a missing device fails cleanly.
//
// Compiled by nvcc (it calls the header-only backend directly); no Eigen.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include <loranull/backend/cuda/cuda_backend.hpp>

#include "../error_message.hpp"

namespace {

using test::error_message;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("cuda_device_count never throws and is never negative") {
    int count = -1;
    CHECK_NOTHROW(count = loranull::cuda_device_count());
    CHECK(count >= 0);
    MESSAGE("cuda_device_count() = " << count);
}

TEST_CASE("CUDA runtime failures become loranull::error naming the call and the status") {
    using namespace loranull::cuda_detail;
    CHECK_NOTHROW(check_cuda(cudaSuccess, "cudaMemcpyAsync(a, b, n, kind, s)", "CudaBackend::upload"));
    const std::string message =
        error_message([] { check_cuda(cudaErrorInvalidValue, "cudaMemcpyAsync(a, b, n, kind, s)", "CudaBackend::upload"); });
    CAPTURE(message);
    CHECK(contains(message, "loranull::CudaBackend::upload: "));
    CHECK(contains(message, "cudaMemcpyAsync(...) failed"));  // the call's name, not its argument expressions
    CHECK(contains(message, "cudaErrorInvalidValue"));
    CHECK(contains(message, "(1)"));
    // The macro passes the call's source text.
    const std::string from_macro = error_message([] { LORANULL_CUDA_CHECK(cudaErrorMemoryAllocation, "CudaBackend::zeros"); });
    CHECK(contains(from_macro, "cudaErrorMemoryAllocation"));
}

TEST_CASE("cuBLAS failures become loranull::error naming the call and the status") {
    using namespace loranull::cuda_detail;
    CHECK_NOTHROW(check_cublas(CUBLAS_STATUS_SUCCESS, "cublasSgemm(h)", "CudaBackend::gemm"));
    const std::string message =
        error_message([] { check_cublas(CUBLAS_STATUS_INVALID_VALUE, "cublasSgemm(h, ...)", "CudaBackend::gemm"); });
    CAPTURE(message);
    CHECK(contains(message, "loranull::CudaBackend::gemm: cublasSgemm(...) failed"));
    CHECK(contains(message, "CUBLAS_STATUS_INVALID_VALUE"));
}

TEST_CASE("cuSOLVER failures and devInfo become loranull::error naming the call and the status") {
    using namespace loranull::cuda_detail;
    CHECK_NOTHROW(check_cusolver(CUSOLVER_STATUS_SUCCESS, "cusolverDnXsyevd(h)", "CudaBackend::symmetric_eigen"));
    const std::string message = error_message(
        [] { check_cusolver(CUSOLVER_STATUS_INVALID_VALUE, "cusolverDnXsyevd(h, ...)", "CudaBackend::symmetric_eigen"); });
    CAPTURE(message);
    CHECK(contains(message, "loranull::CudaBackend::symmetric_eigen: cusolverDnXsyevd(...) failed"));
    CHECK(contains(message, "CUSOLVER_STATUS_INVALID_VALUE (3)"));
    CHECK(contains(error_message([] { check_cusolver(CUSOLVER_STATUS_NOT_SUPPORTED, "f()", "w"); }),
                   "CUSOLVER_STATUS_NOT_SUPPORTED"));
}

TEST_CASE("DeviceMatrix: the empty state touches no CUDA API and negative shapes throw before allocating") {
    loranull::DeviceMatrix<float> empty;
    CHECK(empty.rows() == 0);
    CHECK(empty.cols() == 0);
    CHECK(empty.data() == nullptr);
    CHECK(empty.stream() == nullptr);
    loranull::DeviceMatrix<float> copy = empty;  // deep copy of nothing: no CUDA call
    CHECK(copy.data() == nullptr);
    loranull::DeviceMatrix<double> moved = loranull::DeviceMatrix<double>();
    CHECK(moved.size() == 0);
    // A 0-byte matrix allocates nothing, even without a stream.
    loranull::DeviceMatrix<double> zero_rows(0, 5, nullptr);
    CHECK(zero_rows.cols() == 5);
    CHECK(zero_rows.data() == nullptr);
    const std::string message = error_message([] { loranull::DeviceMatrix<float> bad(-1, 3, nullptr); });
    CHECK(contains(message, "negative shape -1 x 3"));
}

TEST_CASE("CudaBackend on a device that does not exist throws loranull::error") {
    const int count = loranull::cuda_device_count();
    const std::string missing = error_message([&] { loranull::CudaBackend backend(count); });
    CAPTURE(missing);
    CHECK(contains(missing, "loranull::CudaBackend::CudaBackend: "));
    if (count == 0) CHECK(contains(missing, "no CUDA device"));
    else CHECK(contains(missing, "requested"));
    CHECK(contains(error_message([] { loranull::CudaBackend backend(-1); }), "CudaBackend::CudaBackend"));
}

TEST_CASE("double to BF16 / F16 rounds once, on the host side of the conversion functors too") {
    // 1 + 2^-8 + 2^-30 is just above the BF16 midpoint of 1 and 1 + 2^-7: through
    // float it would land on the tie and round to even (1).
    const double above_bf16_tie = 1 + std::ldexp(1.0, -8) + std::ldexp(1.0, -30);
    const double above_f16_tie = 1 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40);
    using loranull::cuda_detail::convert_scalar;
    CHECK(double(__bfloat162float(convert_scalar<__nv_bfloat16>(above_bf16_tie))) == 1 + std::ldexp(1.0, -7));
    CHECK(double(__half2float(convert_scalar<__half>(above_f16_tie))) == 1 + std::ldexp(1.0, -10));
    CHECK(double(__bfloat162float(convert_scalar<__nv_bfloat16>(1 + std::ldexp(1.0, -8)))) == 1.0);  // a tie: even
}
