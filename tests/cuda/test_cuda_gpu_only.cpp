// The GPU cases that are not rows of the parity table (parity_table.hpp),
// because they are not one generic computation compared across backends:
//   * the tensor-core covariance: CpuBackend has no 16-bit types; the
//     reference is computed here from the GPU's own rounded inputs;
//   * the error paths: each backend's messages name the backend (and the CPU
//     kernels' name only the function), so they are checked against the
//     expected words, not against the CPU's (whose own suites check its);
//   * DeviceMatrix's value semantics and a backend on a missing device:
//     CUDA-only objects.
// Every case is decorated with gpu_test::requires_gpu() (skipped without a
// device). The GPU half is gpu_only.cu.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../test_util.hpp"
#include "gpu_only.hpp"
#include "gpu_test.hpp"
#include "parity_inputs.hpp"

using namespace loranull;
using gpu_test::requires_gpu;
using parity::gaussian;
using test::Mat;

namespace {

CpuBackend cpu;

template <class T>
Mat<T> mat(const HostMatrix<T>& h) {
    return cpu.upload(h);
}

template <class T>
double eps() {
    return std::numeric_limits<T>::epsilon();
}

/// An error case and the words its message must contain.
struct ExpectedError {
    gpu::ErrorCase which;
    std::vector<std::string> parts;
};

void check_messages(const std::vector<ExpectedError>& cases) {
    for (const auto& c : cases) {
        const std::string message = gpu::error_message(c.which);
        CAPTURE(message);
        CHECK_FALSE(message.empty());
        for (const auto& part : c.parts) CHECK(message.find(part) != std::string::npos);
    }
}

}  // namespace

TEST_CASE("tensor-core covariance (bf16 and fp16 in, fp32 accumulation) matches the CPU on the rounded inputs" *
          requires_gpu()) {
    struct Case {
        Index n, tokens, block;
        bool bf16;
    };
    for (Case c : {Case{1, 7, 1024, true}, Case{7, 64, 1024, true}, Case{130, 64, 1024, false},
                   Case{130, 64, 32, true}, Case{1100, 48, 1024, true}}) {
        CAPTURE(c.n);
        CAPTURE(c.block);
        CAPTURE(c.bf16);
        const HostMatrix<float> x = gaussian<float>(c.n, c.tokens, 100 + c.n);
        const auto got = gpu::covariance_low_precision(x, c.bf16, c.block);
        // The conversion rounds to nearest: 8 (bf16) or 11 (fp16) significant bits.
        const double unit = c.bf16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
        // (Plus half of fp16's subnormal spacing 2^-24 for the tiny entries.)
        double worst = 0;  // largest rounding error relative to its bound
        for (Index k = 0; k < x.size(); ++k)
            worst = std::max(worst, std::abs(double(got.rounded.data()[k]) - double(x.data()[k])) /
                                        (unit * std::abs(double(x.data()[k])) + std::ldexp(1.0, -25)));
        CHECK(worst <= 1.0);
        // Reference: the covariance of the rounded values, in double.
        const Mat<double> r = mat(got.rounded).cast<double>();
        const Mat<double> expected = r * r.transpose() / double(c.tokens);
        // Products of 16-bit values are exact in fp32; the sum rounds in fp32.
        CHECK(test::relative_error(mat(got.matrix), expected) < 4 * double(c.tokens + 2) * eps<float>());
    }
}

TEST_CASE("GPU error paths throw loranull::error naming the function and the shapes" * requires_gpu()) {
    using gpu::ErrorCase;
    const std::vector<ExpectedError> cases{
        {ErrorCase::gemm_shape, {"loranull::CudaBackend::gemm", "out is 5 x 2"}},
        {ErrorCase::gemm_alias, {"CudaBackend::gemm", "alias"}},
        {ErrorCase::syrk_shape, {"CudaBackend::syrk_lower", "X is 4 x 2", "out is 3 x 3"}},
        {ErrorCase::block_out_of_range, {"CudaBackend::block", "7 x 5"}},
        {ErrorCase::set_block_out_of_range, {"CudaBackend::set_block", "3 x 1", "4 x 4"}},
        {ErrorCase::select_columns_out_of_range, {"CudaBackend::select_columns", "column 5", "7 x 5"}},
        {ErrorCase::eigen_range_out_of_range, {"CudaBackend::symmetric_eigen_range", "4 x 4"}},
        {ErrorCase::eigen_not_square, {"CudaBackend::symmetric_eigen", "4 x 3", "square"}},
        {ErrorCase::scale_columns_count, {"CudaBackend::scale_columns", "2 factors", "4 x 3"}},
        {ErrorCase::scale_rows_count, {"CudaBackend::scale_rows", "3 factors", "4 x 3"}},
        {ErrorCase::trace_not_square, {"CudaBackend::trace", "4 x 3"}},
        {ErrorCase::max_coeff_empty, {"CudaBackend::max_coeff", "empty"}},
        {ErrorCase::covariance_wrong_rows, {"Covariance::add", "5 rows", "expected 4"}},
        {ErrorCase::covariance_nan, {"Covariance::add", "NaN"}},
        {ErrorCase::smallest_eigenpairs_bad_k, {"smallest_eigenpairs", "k = 5"}},
        {ErrorCase::randomized_svd_bad_k, {"randomized_svd", "rank k = 5"}},
        {ErrorCase::null_space_bad_rank, {"null_space", "rank r = 0"}},
        {ErrorCase::null_space_deficient_throws, {"null_space", "rank-deficient"}},
        {ErrorCase::bad_device, {"CudaBackend::CudaBackend", "requested"}},
    };
    check_messages(cases);
}

TEST_CASE("DeviceMatrix: deep copies, moves, copy-assignment, stream ordering" * requires_gpu()) {
    CHECK(gpu::device_matrix_semantics() == "");
}

TEST_CASE("NN kernels on the GPU: bad arguments throw loranull::error naming the function and the values" *
          requires_gpu()) {
    using gpu::ErrorCase;
    const std::vector<ExpectedError> cases{
        {ErrorCase::embedding_bad_token,
         {"loranull::CudaBackend::embedding_forward", "token id 7 at position 1", "vocabulary of 5"}},
        {ErrorCase::embedding_backward_shape, {"CudaBackend::embedding_backward", "dX is 3 x 1", "2 tokens"}},
        {ErrorCase::rmsnorm_gain_shape, {"CudaBackend::rmsnorm_forward", "gain is 3 x 1", "expected 4 x 1"}},
        {ErrorCase::rope_shape, {"CudaBackend::rope", "12 x 6", "sequences of 4"}},
        {ErrorCase::attention_heads, {"CudaBackend::attention_forward", "heads 3 not a multiple of kv heads 2"}},
        {ErrorCase::swiglu_shape, {"CudaBackend::swiglu_forward", "gate is 3 x 2", "up is 2 x 3"}},
        {ErrorCase::cross_entropy_count, {"CudaBackend::cross_entropy_forward", "logits are 5 x 2", "1 targets"}},
        {ErrorCase::cross_entropy_target, {"CudaBackend::cross_entropy_forward", "target 5 at position 1"}},
        {ErrorCase::adamw_shape, {"CudaBackend::adamw_update", "grad is 2 x 3"}},
    };
    check_messages(cases);
}
