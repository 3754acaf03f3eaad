#pragma once
// The GPU half of the parity suite: plain functions that run one primitive or
// one algorithm on loranull::CudaBackend and bring the result back as
// HostMatrix / std::vector. Defined in gpu_ops.cu (nvcc, no Eigen), called
// from test_cuda_parity.cpp (g++, CPU backend, Eigen): this header names no
// CUDA and no Eigen type, so both compilers see the same declarations.
//
// Every function uploads its inputs to the one process-wide CudaBackend,
// runs, downloads. T is float or double (explicitly instantiated in
// gpu_ops.cu). Functions throw loranull::error exactly as the backend does.

#include <cstdint>
#include <string>
#include <vector>

#include <loranull/core/host_matrix.hpp>
#include <loranull/core/types.hpp>

namespace gpu {

using loranull::HostMatrix;
using loranull::Index;
using loranull::Op;

/// cuda_device_count(): 0 without a usable GPU, never throws.
int device_count();
/// "NVIDIA H200 (sm_90, 139 GiB), driver 13.0, runtime 13.0" or "no CUDA device".
std::string device_description();

// --- primitives ------------------------------------------------------------------

template <class T> HostMatrix<T> round_trip(const HostMatrix<T>& a);  // upload, download
template <class T> HostMatrix<T> zeros(Index rows, Index cols);
template <class T> HostMatrix<T> block(const HostMatrix<T>& a, Index row0, Index col0, Index rows, Index cols);
template <class T> HostMatrix<T> set_block(const HostMatrix<T>& out, Index row0, Index col0, const HostMatrix<T>& a);
template <class T> HostMatrix<T> transpose(const HostMatrix<T>& a);
template <class T> HostMatrix<T> select_columns(const HostMatrix<T>& a, const std::vector<Index>& which);
template <class T> HostMatrix<double> to_double(const HostMatrix<T>& a);  // convert<double>
template <class T> HostMatrix<float> to_float(const HostMatrix<T>& a);    // convert<float>

/// out = alpha op(A) op(B) + beta C (C is uploaded as out's old contents).
template <class T>
HostMatrix<T> gemm(Op op_a, Op op_b, T alpha, const HostMatrix<T>& a, const HostMatrix<T>& b, T beta,
                   const HostMatrix<T>& c);
/// C with its lower triangle += alpha X X^T.
template <class T> HostMatrix<T> syrk_lower(T alpha, const HostMatrix<T>& x, const HostMatrix<T>& c);
/// The mixed one: float X into double C.
HostMatrix<double> syrk_lower_mixed(double alpha, const HostMatrix<float>& x, const HostMatrix<double>& c);
template <class T> HostMatrix<T> symmetrize_lower(const HostMatrix<T>& a);

template <class T> HostMatrix<T> scale(T alpha, const HostMatrix<T>& a);
template <class T> HostMatrix<T> axpy(T alpha, const HostMatrix<T>& a, const HostMatrix<T>& out);
template <class T> HostMatrix<T> scale_columns(const HostMatrix<T>& a, const std::vector<T>& factors);
template <class T> HostMatrix<T> scale_rows(const HostMatrix<T>& a, const std::vector<T>& factors);
template <class T> HostMatrix<T> add_to_diagonal(const HostMatrix<T>& a, T alpha);
template <class T> T trace(const HostMatrix<T>& a);
template <class T> T max_coeff(const HostMatrix<T>& a);
template <class T> T frobenius_norm(const HostMatrix<T>& a);
template <class T> bool all_finite(const HostMatrix<T>& a);

template <class T>
struct Eigenpairs {
    std::vector<T> values;
    HostMatrix<T> vectors;  // n x k
};
template <class T>
struct Svd {
    HostMatrix<T> U;
    std::vector<T> singular_values;
    HostMatrix<T> V;
};

template <class T> Eigenpairs<T> symmetric_eigen(const HostMatrix<T>& a);  // the primitive
template <class T> Eigenpairs<T> symmetric_eigen_range(const HostMatrix<T>& a, Index first, Index count);
template <class T> Svd<T> thin_svd(const HostMatrix<T>& a);  // the primitive
template <class T> HostMatrix<T> thin_q(const HostMatrix<T>& a);

// --- algorithms (linalg/, unchanged, instantiated on CudaBackend) -----------------

struct CovarianceRun {
    bool reference = false;           // Normalisation::reference (divisor 256) instead of plain
    Index tokens_per_sample = 0;      // > 0: add_samples on the whole batch instead of add per batch
};

template <class T>
struct CovarianceResult {
    HostMatrix<T> matrix;             // Covariance::matrix()
    HostMatrix<T> raw_sum_lower;      // lower triangle meaningful
    std::int64_t tokens = 0;
    std::int64_t samples = 0;
    std::string data_id;
};

/// Covariance<CudaBackend, T> fed with `batches` (Tx = float or double activations).
template <class T, class Tx>
CovarianceResult<T> covariance(Index dim, const std::vector<HostMatrix<Tx>>& batches, CovarianceRun run = {});
/// Two accumulators ("a" over batches_a, "b" over batches_b) merged into the first.
template <class T>
CovarianceResult<T> covariance_merged(Index dim, const std::vector<HostMatrix<float>>& batches_a,
                                      const std::vector<HostMatrix<float>>& batches_b);

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

template <class T> Eigenpairs<T> smallest_eigenpairs(const HostMatrix<T>& c, Index k);
template <class T> Eigenpairs<T> largest_eigenpairs(const HostMatrix<T>& c, Index k);
template <class T> Eigenpairs<T> symmetric_eigen_algorithm(const HostMatrix<T>& c);  // linalg's symmetric_eigen
template <class T> Svd<T> thin_svd_algorithm(const HostMatrix<T>& a);                // linalg's thin_svd
template <class T> Svd<T> truncated_svd(const HostMatrix<T>& a, Index k, bool largest);
template <class T>
Svd<T> randomized_svd(const HostMatrix<T>& a, Index k, Index oversampling, Index power_iterations, std::uint64_t seed);

template <class T>
struct NullSpaceResult {
    HostMatrix<T> basis;        // n x r
    std::vector<T> eigenvalues; // r
    T trace = 0;
    double energy_fraction = 0;
    bool deficient = false;
    Index zero_eigenvalues_seen = 0;
    Index structural_zeros = 0;
    HostMatrix<T> projected;    // project(W), when W was given (else empty)
};
/// null_space(C, r) and, when w is not empty, its project(w).
template <class T> NullSpaceResult<T> null_space(const HostMatrix<T>& c, Index r, const HostMatrix<T>& w);
/// null_space(Covariance of x, r): the token-count-aware overload.
template <class T> NullSpaceResult<T> null_space_of_activations(const HostMatrix<float>& x, Index r);

// --- GPU-specific behaviour ---------------------------------------------------------

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
};
std::string error_message(ErrorCase which);

/// DeviceMatrix value semantics (deep copy, copy-assign, move leaves empty,
/// default is empty, copies ordered on the stream); "" when all hold, else
/// what failed.
std::string device_matrix_semantics();

}  // namespace gpu
