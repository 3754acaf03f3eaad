// The GPU half of the parity suite (see gpu_ops.hpp): every primitive and every
// linalg algorithm run on CudaBackend, results brought back to the host.
// Compiled by nvcc; includes no Eigen.
#include "gpu_ops.hpp"

#include <cstdio>
#include <limits>
#include <string>
#include <utility>

#include <loranull/backend/cuda/cuda_backend.hpp>

#include "../error_message.hpp"
#include <loranull/linalg/covariance.hpp>
#include <loranull/linalg/null_space.hpp>
#include <loranull/linalg/svd.hpp>
#include <loranull/linalg/symmetric_eigen.hpp>

namespace gpu {

using loranull::CudaBackend;
using loranull::DeviceMatrix;

namespace {

/// One backend for the whole test process (a stream and two library handles),
/// deliberately never destroyed: library handles torn down by static
/// destructors after the CUDA runtime has begun its own shutdown is a classic
/// source of crashes at exit.
CudaBackend& backend() {
    static CudaBackend* instance = new CudaBackend(0);
    return *instance;
}

template <class T>
DeviceMatrix<T> up(const HostMatrix<T>& a) {
    return backend().upload(a);
}

template <class T>
HostMatrix<T> down(const DeviceMatrix<T>& a) {
    return backend().download(a);
}

template <class T>
Eigenpairs<T> down(const loranull::SymmetricEigen<T, DeviceMatrix<T>>& pairs) {
    return {pairs.values, down(pairs.vectors)};
}

template <class T>
Svd<T> down(const loranull::ThinSvd<T, DeviceMatrix<T>>& svd) {
    return {down(svd.U), svd.singular_values, down(svd.V)};
}

template <class T, class Tx>
CovarianceResult<T> result_of(const loranull::Covariance<CudaBackend, T>& cov) {
    CovarianceResult<T> out;
    out.matrix = down(cov.matrix());
    out.raw_sum_lower = down(cov.raw_sum_lower());
    out.tokens = cov.tokens();
    out.samples = cov.samples();
    out.data_id = cov.data_id();
    return out;
}

using test::error_message;

}  // namespace

int device_count() { return loranull::cuda_device_count(); }

std::string device_description() {
    const int count = loranull::cuda_device_count();
    if (count == 0) return "no CUDA device";
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return "CUDA device 0 (properties unavailable)";
    int driver = 0, runtime = 0;
    (void)cudaDriverGetVersion(&driver);
    (void)cudaRuntimeGetVersion(&runtime);
    char text[512];
    std::snprintf(text, sizeof text, "%s (sm_%d%d, %.0f GiB), %d device(s), driver %d.%d, runtime %d.%d", prop.name,
                  prop.major, prop.minor, static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0), count,
                  driver / 1000, (driver % 1000) / 10, runtime / 1000, (runtime % 1000) / 10);
    return text;
}

// --- primitives ------------------------------------------------------------------

template <class T>
HostMatrix<T> round_trip(const HostMatrix<T>& a) {
    return down(up(a));
}

template <class T>
HostMatrix<T> zeros(Index rows, Index cols) {
    return down(backend().zeros<T>(rows, cols));
}

template <class T>
HostMatrix<T> block(const HostMatrix<T>& a, Index row0, Index col0, Index rows, Index cols) {
    return down(backend().block(up(a), row0, col0, rows, cols));
}

template <class T>
HostMatrix<T> set_block(const HostMatrix<T>& out, Index row0, Index col0, const HostMatrix<T>& a) {
    auto d = up(out);
    backend().set_block(d, row0, col0, up(a));
    return down(d);
}

template <class T>
HostMatrix<T> transpose(const HostMatrix<T>& a) {
    return down(backend().transpose(up(a)));
}

template <class T>
HostMatrix<T> select_columns(const HostMatrix<T>& a, const std::vector<Index>& which) {
    return down(backend().select_columns(up(a), which));
}

template <class T>
HostMatrix<double> to_double(const HostMatrix<T>& a) {
    return down(backend().convert<double>(up(a)));
}

template <class T>
HostMatrix<float> to_float(const HostMatrix<T>& a) {
    return down(backend().convert<float>(up(a)));
}

template <class T>
HostMatrix<T> gemm(Op op_a, Op op_b, T alpha, const HostMatrix<T>& a, const HostMatrix<T>& b, T beta,
                   const HostMatrix<T>& c) {
    auto out = up(c);
    backend().gemm(op_a, op_b, alpha, up(a), up(b), beta, out);
    return down(out);
}

template <class T>
HostMatrix<T> syrk_lower(T alpha, const HostMatrix<T>& x, const HostMatrix<T>& c) {
    auto out = up(c);
    backend().syrk_lower(alpha, up(x), out);
    return down(out);
}

HostMatrix<double> syrk_lower_mixed(double alpha, const HostMatrix<float>& x, const HostMatrix<double>& c) {
    auto out = up(c);
    backend().syrk_lower(alpha, up(x), out);
    return down(out);
}

template <class T>
HostMatrix<T> symmetrize_lower(const HostMatrix<T>& a) {
    auto d = up(a);
    backend().symmetrize_lower(d);
    return down(d);
}

template <class T>
HostMatrix<T> scale(T alpha, const HostMatrix<T>& a) {
    auto d = up(a);
    backend().scale(alpha, d);
    return down(d);
}

template <class T>
HostMatrix<T> axpy(T alpha, const HostMatrix<T>& a, const HostMatrix<T>& out) {
    auto d = up(out);
    backend().axpy(alpha, up(a), d);
    return down(d);
}

template <class T>
HostMatrix<T> scale_columns(const HostMatrix<T>& a, const std::vector<T>& factors) {
    auto d = up(a);
    backend().scale_columns(d, factors);
    return down(d);
}

template <class T>
HostMatrix<T> scale_rows(const HostMatrix<T>& a, const std::vector<T>& factors) {
    auto d = up(a);
    backend().scale_rows(d, factors);
    return down(d);
}

template <class T>
HostMatrix<T> add_to_diagonal(const HostMatrix<T>& a, T alpha) {
    auto d = up(a);
    backend().add_to_diagonal(d, alpha);
    return down(d);
}

template <class T>
T trace(const HostMatrix<T>& a) {
    return backend().trace(up(a));
}

template <class T>
T max_coeff(const HostMatrix<T>& a) {
    return backend().max_coeff(up(a));
}

template <class T>
T frobenius_norm(const HostMatrix<T>& a) {
    return backend().frobenius_norm(up(a));
}

template <class T>
bool all_finite(const HostMatrix<T>& a) {
    return backend().all_finite(up(a));
}

template <class T>
Eigenpairs<T> symmetric_eigen(const HostMatrix<T>& a) {
    return down(backend().symmetric_eigen(up(a)));
}

template <class T>
Eigenpairs<T> symmetric_eigen_range(const HostMatrix<T>& a, Index first, Index count) {
    return down(backend().symmetric_eigen_range(up(a), first, count));
}

template <class T>
Svd<T> thin_svd(const HostMatrix<T>& a) {
    return down(backend().thin_svd(up(a)));
}

template <class T>
HostMatrix<T> thin_q(const HostMatrix<T>& a) {
    return down(backend().thin_q(up(a)));
}

// --- algorithms ------------------------------------------------------------------

template <class T, class Tx>
CovarianceResult<T> covariance(Index dim, const std::vector<HostMatrix<Tx>>& batches, CovarianceRun run) {
    using loranull::Normalisation;
    loranull::Covariance<CudaBackend, T> cov(backend(), dim, run.reference ? Normalisation::reference : Normalisation::plain,
                                             "parity");
    for (const auto& batch : batches) {
        if (run.tokens_per_sample > 0) cov.add_samples(up(batch), run.tokens_per_sample);
        else cov.add(up(batch));
    }
    return result_of<T, Tx>(cov);
}

template <class T>
CovarianceResult<T> covariance_merged(Index dim, const std::vector<HostMatrix<float>>& batches_a,
                                      const std::vector<HostMatrix<float>>& batches_b) {
    loranull::Covariance<CudaBackend, T> a(backend(), dim, loranull::Normalisation::plain, "a");
    loranull::Covariance<CudaBackend, T> b(backend(), dim, loranull::Normalisation::plain, "b");
    for (const auto& x : batches_a) a.add(up(x));
    for (const auto& x : batches_b) b.add(up(x));
    a.merge(b);
    return result_of<T, float>(a);
}

LowPrecisionCovariance covariance_low_precision(const HostMatrix<float>& x, bool bf16, Index block) {
    CudaBackend& b = backend();
    const auto xf = up(x);
    loranull::Covariance<CudaBackend, float> cov(b, x.rows(), loranull::Normalisation::plain, "tensor-core");
    LowPrecisionCovariance out;
    if (bf16) {
        const auto x16 = b.convert<__nv_bfloat16>(xf);
        if (block == 1024) {
            cov.add(x16);  // the generic accumulator, dispatching to the tensor-core path
        } else {           // a non-default block width, through the method itself
            loranull::DeviceMatrix<float> sum = b.zeros<float>(x.rows(), x.rows());
            b.syrk_lower_tensor_core(1.0f, x16, sum, block);
            cov = loranull::Covariance<CudaBackend, float>(b, std::move(sum),
                                                           loranull::CovarianceInfo{loranull::Normalisation::plain,
                                                                                    256.0, "tensor-core", x.cols(), 1});
        }
        out.rounded = down(b.convert<float>(x16));
    } else {
        const auto x16 = b.convert<__half>(xf);
        cov.add(x16);
        out.rounded = down(b.convert<float>(x16));
    }
    out.matrix = down(cov.matrix());
    return out;
}

template <class T>
Eigenpairs<T> smallest_eigenpairs(const HostMatrix<T>& c, Index k) {
    return down(loranull::smallest_eigenpairs(backend(), up(c), k));
}

template <class T>
Eigenpairs<T> largest_eigenpairs(const HostMatrix<T>& c, Index k) {
    return down(loranull::largest_eigenpairs(backend(), up(c), k));
}

template <class T>
Eigenpairs<T> symmetric_eigen_algorithm(const HostMatrix<T>& c) {
    return down(loranull::symmetric_eigen(backend(), up(c)));
}

template <class T>
Svd<T> thin_svd_algorithm(const HostMatrix<T>& a) {
    return down(loranull::thin_svd(backend(), up(a)));
}

template <class T>
Svd<T> truncated_svd(const HostMatrix<T>& a, Index k, bool largest) {
    return down(loranull::truncated_svd(backend(), up(a), k,
                                        largest ? loranull::Triplets::largest : loranull::Triplets::smallest));
}

template <class T>
Svd<T> randomized_svd(const HostMatrix<T>& a, Index k, Index oversampling, Index power_iterations, std::uint64_t seed) {
    loranull::RandomizedSvdOptions options;
    options.oversampling = oversampling;
    options.power_iterations = power_iterations;
    options.seed = seed;
    return down(loranull::randomized_svd(backend(), up(a), k, options));
}

template <class T>
NullSpaceResult<T> result_of(const loranull::NullSpace<CudaBackend, T>& ns, const HostMatrix<T>& w) {
    NullSpaceResult<T> out;
    out.basis = down(ns.basis);
    out.eigenvalues = ns.eigenvalues;
    out.trace = ns.trace;
    out.energy_fraction = ns.energy_fraction();
    out.deficient = ns.rank_report.deficient;
    out.zero_eigenvalues_seen = ns.rank_report.zero_eigenvalues_seen;
    out.structural_zeros = ns.rank_report.structural_zeros;
    if (w.size() > 0) out.projected = down(ns.project(backend(), up(w)));
    return out;
}

template <class T>
NullSpaceResult<T> null_space(const HostMatrix<T>& c, Index r, const HostMatrix<T>& w) {
    return result_of(loranull::null_space(backend(), up(c), r), w);
}

template <class T>
NullSpaceResult<T> null_space_of_activations(const HostMatrix<float>& x, Index r) {
    loranull::Covariance<CudaBackend, T> cov(backend(), x.rows());
    cov.add(up(x));
    return result_of(loranull::null_space(cov, r), HostMatrix<T>());
}

// --- GPU-specific behaviour ---------------------------------------------------------

std::string error_message(ErrorCase which) {
    using loranull::Rng;
    using loranull::random_normal;
    Rng rng(7);
    auto h = [&](Index r, Index c) { return random_normal<double>(r, c, rng); };
    switch (which) {
        case ErrorCase::gemm_shape:
            return error_message([&] { gemm(Op::none, Op::none, 1.0, h(4, 3), h(3, 2), 0.0, h(5, 2)); });
        case ErrorCase::gemm_alias:
            return error_message([&] {
                auto a = up(h(3, 3));
                backend().gemm(Op::none, Op::none, 1.0, a, a, 0.0, a);
            });
        case ErrorCase::syrk_shape: return error_message([&] { syrk_lower(1.0, h(4, 2), h(3, 3)); });
        case ErrorCase::block_out_of_range: return error_message([&] { block(h(7, 5), 5, 0, 3, 1); });
        case ErrorCase::set_block_out_of_range: return error_message([&] { set_block(h(4, 4), 2, 2, h(3, 1)); });
        case ErrorCase::select_columns_out_of_range: return error_message([&] { select_columns(h(7, 5), {0, 5}); });
        case ErrorCase::eigen_range_out_of_range: return error_message([&] { symmetric_eigen_range(h(4, 4), 2, 3); });
        case ErrorCase::eigen_not_square: return error_message([&] { symmetric_eigen(h(4, 3)); });
        case ErrorCase::scale_columns_count: return error_message([&] { scale_columns(h(4, 3), std::vector<double>(2)); });
        case ErrorCase::scale_rows_count: return error_message([&] { scale_rows(h(4, 3), std::vector<double>(3)); });
        case ErrorCase::trace_not_square: return error_message([&] { trace(h(4, 3)); });
        case ErrorCase::max_coeff_empty: return error_message([&] { max_coeff(HostMatrix<double>(0, 3)); });
        case ErrorCase::covariance_wrong_rows:
            return error_message([&] {
                loranull::Covariance<CudaBackend, double> cov(backend(), 4);
                cov.add(up(h(5, 10)));
            });
        case ErrorCase::covariance_nan:
            return error_message([&] {
                loranull::Covariance<CudaBackend, double> cov(backend(), 4);
                auto x = h(4, 10);
                x(2, 3) = std::numeric_limits<double>::quiet_NaN();
                cov.add(up(x));
            });
        case ErrorCase::smallest_eigenpairs_bad_k: return error_message([&] { smallest_eigenpairs(h(4, 4), 5); });
        case ErrorCase::randomized_svd_bad_k: return error_message([&] { randomized_svd(h(6, 4), 5, 2, 1, 0); });
        case ErrorCase::null_space_bad_rank:
            return error_message([&] { null_space(HostMatrix<double>(4, 4, 1.0), 0, HostMatrix<double>()); });
        case ErrorCase::null_space_deficient_throws:
            return error_message([&] {
                loranull::Covariance<CudaBackend, double> cov(backend(), 16);
                cov.add(up(h(16, 4)));  // rank 4: 12 zero eigenvalues > r = 2
                loranull::NullSpaceOptions options;
                options.on_rank_deficient = loranull::OnRankDeficient::throw_error;
                (void)loranull::null_space(cov, 2, options);
            });
        case ErrorCase::bad_device:
            return error_message([&] { CudaBackend other(loranull::cuda_device_count()); });
    }
    return "unknown case";
}

std::string device_matrix_semantics() {
    CudaBackend& b = backend();
    loranull::Rng rng(3);
    const HostMatrix<float> h = loranull::random_normal<float>(5, 4, rng);
    DeviceMatrix<float> empty;
    if (empty.rows() != 0 || empty.cols() != 0 || empty.data() != nullptr) return "default-constructed is not empty";
    DeviceMatrix<float> a = b.upload(h);
    DeviceMatrix<float> copy = a;  // deep
    if (copy.data() == a.data()) return "copy shares storage";
    b.scale(2.0f, copy);
    if (!(b.download(a) == h)) return "writing the copy changed the original";
    DeviceMatrix<float> assigned = b.zeros<float>(5, 4);
    assigned = a;  // same shape: storage reused, contents copied
    if (!(b.download(assigned) == h)) return "copy-assignment (same shape) differs";
    DeviceMatrix<float> reshaped = b.zeros<float>(2, 2);
    reshaped = a;  // other shape: reallocated
    if (reshaped.rows() != 5 || reshaped.cols() != 4 || !(b.download(reshaped) == h))
        return "copy-assignment (other shape) differs";
    const float* storage = a.data();
    DeviceMatrix<float> moved = std::move(a);
    if (moved.data() != storage || a.data() != nullptr || a.rows() != 0 || a.cols() != 0)
        return "move did not transfer the storage and leave the source empty";
    DeviceMatrix<float> move_assigned;
    move_assigned = std::move(moved);
    if (move_assigned.data() != storage || moved.data() != nullptr) return "move-assignment did not transfer";
    if (move_assigned.stream() != b.stream()) return "matrix does not live on the backend's stream";
    // A long chain of stream-ordered writes then a copy: the copy must see them all.
    DeviceMatrix<float> acc = b.zeros<float>(64, 64);
    for (int i = 0; i < 100; ++i) b.add_to_diagonal(acc, 1.0f);
    DeviceMatrix<float> snapshot = acc;
    if (b.trace(snapshot) != 6400.0f) return "copy is not ordered after earlier writes on the stream";
    return "";
}

// --- explicit instantiations for float and double ---------------------------------

#define LORANULL_GPU_OPS_INSTANTIATE(T)                                                                          \
    template HostMatrix<T> round_trip<T>(const HostMatrix<T>&);                                                  \
    template HostMatrix<T> zeros<T>(Index, Index);                                                               \
    template HostMatrix<T> block<T>(const HostMatrix<T>&, Index, Index, Index, Index);                           \
    template HostMatrix<T> set_block<T>(const HostMatrix<T>&, Index, Index, const HostMatrix<T>&);               \
    template HostMatrix<T> transpose<T>(const HostMatrix<T>&);                                                   \
    template HostMatrix<T> select_columns<T>(const HostMatrix<T>&, const std::vector<Index>&);                   \
    template HostMatrix<double> to_double<T>(const HostMatrix<T>&);                                              \
    template HostMatrix<float> to_float<T>(const HostMatrix<T>&);                                                \
    template HostMatrix<T> gemm<T>(Op, Op, T, const HostMatrix<T>&, const HostMatrix<T>&, T, const HostMatrix<T>&); \
    template HostMatrix<T> syrk_lower<T>(T, const HostMatrix<T>&, const HostMatrix<T>&);                         \
    template HostMatrix<T> symmetrize_lower<T>(const HostMatrix<T>&);                                            \
    template HostMatrix<T> scale<T>(T, const HostMatrix<T>&);                                                    \
    template HostMatrix<T> axpy<T>(T, const HostMatrix<T>&, const HostMatrix<T>&);                               \
    template HostMatrix<T> scale_columns<T>(const HostMatrix<T>&, const std::vector<T>&);                        \
    template HostMatrix<T> scale_rows<T>(const HostMatrix<T>&, const std::vector<T>&);                           \
    template HostMatrix<T> add_to_diagonal<T>(const HostMatrix<T>&, T);                                          \
    template T trace<T>(const HostMatrix<T>&);                                                                   \
    template T max_coeff<T>(const HostMatrix<T>&);                                                               \
    template T frobenius_norm<T>(const HostMatrix<T>&);                                                          \
    template bool all_finite<T>(const HostMatrix<T>&);                                                           \
    template Eigenpairs<T> symmetric_eigen<T>(const HostMatrix<T>&);                                             \
    template Eigenpairs<T> symmetric_eigen_range<T>(const HostMatrix<T>&, Index, Index);                         \
    template Svd<T> thin_svd<T>(const HostMatrix<T>&);                                                           \
    template HostMatrix<T> thin_q<T>(const HostMatrix<T>&);                                                      \
    template CovarianceResult<T> covariance<T, float>(Index, const std::vector<HostMatrix<float>>&, CovarianceRun); \
    template CovarianceResult<T> covariance<T, double>(Index, const std::vector<HostMatrix<double>>&, CovarianceRun); \
    template CovarianceResult<T> covariance_merged<T>(Index, const std::vector<HostMatrix<float>>&,              \
                                                      const std::vector<HostMatrix<float>>&);                    \
    template Eigenpairs<T> smallest_eigenpairs<T>(const HostMatrix<T>&, Index);                                  \
    template Eigenpairs<T> largest_eigenpairs<T>(const HostMatrix<T>&, Index);                                   \
    template Eigenpairs<T> symmetric_eigen_algorithm<T>(const HostMatrix<T>&);                                   \
    template Svd<T> thin_svd_algorithm<T>(const HostMatrix<T>&);                                                 \
    template Svd<T> truncated_svd<T>(const HostMatrix<T>&, Index, bool);                                         \
    template Svd<T> randomized_svd<T>(const HostMatrix<T>&, Index, Index, Index, std::uint64_t);                 \
    template NullSpaceResult<T> null_space<T>(const HostMatrix<T>&, Index, const HostMatrix<T>&);                \
    template NullSpaceResult<T> null_space_of_activations<T>(const HostMatrix<float>&, Index);

LORANULL_GPU_OPS_INSTANTIATE(float)
LORANULL_GPU_OPS_INSTANTIATE(double)

}  // namespace gpu
