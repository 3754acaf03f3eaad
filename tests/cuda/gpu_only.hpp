#pragma once
// The GPU half of the cases that are not a generic computation over a backend
// (why each is not in parity_table.hpp: see test_cuda_gpu_only.cpp). Defined
// in gpu_only.cu (nvcc, no Eigen); this header names no CUDA and no Eigen type.

#include <string>

#include <loranull/core/host_matrix.hpp>
#include <loranull/core/types.hpp>

namespace gpu {

using loranull::HostMatrix;
using loranull::Index;

/// The tensor-core covariance: X (float on the host) is converted on the device
/// to bf16 (or fp16), then accumulated into a float Covariance (plain
/// normalisation) through syrk_lower -> syrk_lower_tensor_core. `rounded`
/// receives the 16-bit values as floats, so the CPU can compute the exact
/// reference from the same inputs.
struct LowPrecisionCovariance {
    HostMatrix<float> matrix;
    HostMatrix<float> rounded;
};
LowPrecisionCovariance covariance_low_precision(const HostMatrix<float>& x, bool bf16, Index block = 1024);

/// The loranull::error message each case throws on the GPU ("" if none).
enum class ErrorCase {
    gemm_shape,            // 4x3 * 3x2 into 5x2
    gemm_alias,            // out aliases A
    syrk_shape,            // 4 x 2 X into a 3 x 3 C
    block_out_of_range,
    set_block_out_of_range,
    select_columns_out_of_range,
    eigen_range_out_of_range,
    eigen_not_square,
    scale_columns_count,
    scale_rows_count,
    trace_not_square,
    max_coeff_empty,
    covariance_wrong_rows,
    covariance_nan,
    smallest_eigenpairs_bad_k,
    randomized_svd_bad_k,
    null_space_bad_rank,
    null_space_deficient_throws,
    bad_device,            // CudaBackend(device_count())
    // the NN kernels
    embedding_bad_token,        // id 7 of a vocabulary of 5
    embedding_backward_shape,   // dX 3 x 1 for 2 tokens
    rmsnorm_gain_shape,         // gain 3 x 1 for x 4 x 2
    rope_shape,                 // 12 x 6 for sequences of 4
    attention_heads,            // 3 heads on 2 kv heads
    swiglu_shape,               // gate 3 x 2, up 2 x 3
    cross_entropy_count,        // logits 5 x 2 for 1 target
    cross_entropy_target,       // target 5 of a vocabulary of 5
    adamw_shape,                // grad 2 x 3 for param 2 x 2
};
std::string error_message(ErrorCase which);

/// DeviceMatrix value semantics (deep copy, copy-assign, move leaves empty,
/// default is empty, copies ordered on the stream); "" when all hold, else
/// what failed.
std::string device_matrix_semantics();

}  // namespace gpu
