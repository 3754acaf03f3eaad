// The GPU half of the cases outside the parity table (gpu_only.hpp):
// the tensor-core covariance, the error paths, DeviceMatrix's semantics.
// Compiled by nvcc; includes no Eigen.
#include "gpu_only.hpp"

#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <loranull/linalg/covariance.hpp>
#include <loranull/linalg/null_space.hpp>
#include <loranull/linalg/svd.hpp>
#include <loranull/linalg/symmetric_eigen.hpp>

#include "../error_message.hpp"
#include "gpu_backend.hpp"

namespace gpu {

using loranull::CudaBackend;
using loranull::DeviceMatrix;
using loranull::Op;
using test::error_message;

LowPrecisionCovariance covariance_low_precision(const HostMatrix<float>& x, bool bf16, Index block) {
    CudaBackend& b = parity::gpu_backend();
    const auto xf = b.upload(x);
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
        out.rounded = b.download(b.convert<float>(x16));
    } else {
        const auto x16 = b.convert<__half>(xf);
        cov.add(x16);
        out.rounded = b.download(b.convert<float>(x16));
    }
    out.matrix = b.download(cov.matrix());
    return out;
}

std::string error_message(ErrorCase which) {
    using loranull::Rng;
    using loranull::random_normal;
    Rng rng(7);
    auto h = [&](Index r, Index c) { return random_normal<double>(r, c, rng); };
    CudaBackend& b = parity::gpu_backend();
    const auto up = [&](const HostMatrix<double>& m) { return b.upload(m); };
    using H = HostMatrix<double>;
    using loranull::AttentionShape;
    switch (which) {
        case ErrorCase::gemm_shape:
            return error_message([&] {
                auto out = up(h(5, 2));
                b.gemm(Op::none, Op::none, 1.0, up(h(4, 3)), up(h(3, 2)), 0.0, out);
            });
        case ErrorCase::gemm_alias:
            return error_message([&] {
                auto a = up(h(3, 3));
                b.gemm(Op::none, Op::none, 1.0, a, a, 0.0, a);
            });
        case ErrorCase::syrk_shape: return error_message([&] {
                auto out = up(h(3, 3));
                b.syrk_lower(1.0, up(h(4, 2)), out);
            });
        case ErrorCase::block_out_of_range: return error_message([&] { b.block(up(h(7, 5)), 5, 0, 3, 1); });
        case ErrorCase::set_block_out_of_range: return error_message([&] {
                auto out = up(h(4, 4));
                b.set_block(out, 2, 2, up(h(3, 1)));
            });
        case ErrorCase::select_columns_out_of_range: return error_message([&] { b.select_columns(up(h(7, 5)), {0, 5}); });
        case ErrorCase::eigen_range_out_of_range: return error_message([&] { b.symmetric_eigen_range(up(h(4, 4)), 2, 3); });
        case ErrorCase::eigen_not_square: return error_message([&] { b.symmetric_eigen(up(h(4, 3))); });
        case ErrorCase::scale_columns_count: return error_message([&] {
                auto m = up(h(4, 3));
                b.scale_columns(m, std::vector<double>(2));
            });
        case ErrorCase::scale_rows_count: return error_message([&] {
                auto m = up(h(4, 3));
                b.scale_rows(m, std::vector<double>(3));
            });
        case ErrorCase::trace_not_square: return error_message([&] { b.trace(up(h(4, 3))); });
        case ErrorCase::max_coeff_empty: return error_message([&] { b.max_coeff(up(HostMatrix<double>(0, 3))); });
        case ErrorCase::covariance_wrong_rows:
            return error_message([&] {
                loranull::Covariance<CudaBackend, double> cov(b, 4);
                cov.add(up(h(5, 10)));
            });
        case ErrorCase::covariance_nan:
            return error_message([&] {
                loranull::Covariance<CudaBackend, double> cov(b, 4);
                auto x = h(4, 10);
                x(2, 3) = std::numeric_limits<double>::quiet_NaN();
                cov.add(up(x));
            });
        case ErrorCase::smallest_eigenpairs_bad_k: return error_message([&] { loranull::smallest_eigenpairs(b, up(h(4, 4)), 5); });
        case ErrorCase::randomized_svd_bad_k: return error_message([&] {
                loranull::RandomizedSvdOptions options;
                options.oversampling = 2;
                options.power_iterations = 1;
                options.seed = 0;
                loranull::randomized_svd(b, up(h(6, 4)), 5, options);
            });
        case ErrorCase::null_space_bad_rank:
            return error_message([&] { loranull::null_space(b, up(HostMatrix<double>(4, 4, 1.0)), 0); });
        case ErrorCase::null_space_deficient_throws:
            return error_message([&] {
                loranull::Covariance<CudaBackend, double> cov(b, 16);
                cov.add(up(h(16, 4)));  // rank 4: 12 zero eigenvalues > r = 2
                loranull::NullSpaceOptions options;
                options.on_rank_deficient = loranull::OnRankDeficient::throw_error;
                (void)loranull::null_space(cov, 2, options);
            });
        case ErrorCase::bad_device:
            return error_message([&] { CudaBackend other(loranull::cuda_device_count()); });
        case ErrorCase::embedding_bad_token: return error_message([&] { b.embedding_forward(up(H(3, 5)), {0, 7}); });
        case ErrorCase::embedding_backward_shape:
            return error_message([&] {
                auto d_table = up(H(3, 5));
                b.embedding_backward(d_table, up(H(3, 1)), {0, 1});
            });
        case ErrorCase::rmsnorm_gain_shape:
            return error_message([&] {
                DeviceMatrix<double> rstd;
                b.rmsnorm_forward(up(H(4, 2)), up(H(3, 1)), 1e-5, rstd);
            });
        case ErrorCase::rope_shape:
            return error_message([&] {
                auto x = up(H(12, 6));
                b.rope(x, 2, 6, 4, loranull::rope_frequencies(10000.0, 6), 1);
            });
        case ErrorCase::attention_heads:
            return error_message([&] {
                DeviceMatrix<double> probs;
                b.attention_forward(up(H(12, 4)), up(H(8, 4)), up(H(8, 4)), AttentionShape{3, 2, 4, 4}, probs);
            });
        case ErrorCase::swiglu_shape: return error_message([&] { b.swiglu_forward(up(H(3, 2)), up(H(2, 3))); });
        case ErrorCase::cross_entropy_count:
            return error_message([&] {
                DeviceMatrix<double> probs;
                b.cross_entropy_forward(up(H(5, 2)), {1}, probs);
            });
        case ErrorCase::cross_entropy_target:
            return error_message([&] {
                DeviceMatrix<double> probs;
                b.cross_entropy_forward(up(H(5, 2)), {1, 5}, probs);
            });
        case ErrorCase::adamw_shape:
            return error_message([&] {
                auto param = up(H(2, 2)), m = up(H(2, 2)), v = up(H(2, 2));
                b.adamw_update(param, up(H(2, 3)), m, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1);
            });
    }
    return "unknown case";
}

std::string device_matrix_semantics() {
    CudaBackend& b = parity::gpu_backend();
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

}  // namespace gpu
