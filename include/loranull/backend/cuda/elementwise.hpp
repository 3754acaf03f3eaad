#pragma once
// The CUDA backend's elementwise work and reductions: Thrust on the
// backend's stream for scale, axpy and the reductions (trace, max_coeff,
// frobenius_norm, all_finite: the host waits for their result), the small
// grid-stride kernels of kernels.hpp for the rest.
//
// A CRTP base of CudaBackend (cuda_backend.hpp): Bk is CudaBackend, whose
// cuda_detail::CudaContext base (context.hpp) provides the device, the stream,
// the library handles, the workspace and the small helpers used here.
// Included only from .cu translation units.

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <vector>

#include <cuda_runtime_api.h>

#include <thrust/execution_policy.h>
#include <thrust/functional.h>
#include <thrust/inner_product.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/logical.h>
#include <thrust/reduce.h>
#include <thrust/transform.h>
#include <thrust/transform_reduce.h>

#include "loranull/backend/cuda/check.hpp"
#include "loranull/backend/cuda/context.hpp"
#include "loranull/backend/cuda/device_matrix.hpp"
#include "loranull/backend/cuda/kernels.hpp"
#include "loranull/core/error.hpp"
#include "loranull/core/types.hpp"

namespace loranull {

template <class Bk>
class CudaElementwise {
    template <class T>
    using Matrix = DeviceMatrix<T>;

public:
    template <Real T>
    void scale(T alpha, Matrix<T>& out) const {
        if (out.size() == 0) return;
        const cuda_detail::DeviceGuard guard(self().device(), "CudaBackend::scale");
        thrust_call("CudaBackend::scale", [&] {
            thrust::transform(thrust::cuda::par_nosync.on(self().stream()), out.data(), out.data() + out.size(), out.data(),
                              cuda_detail::Scale<T>{alpha});
        });
        check_launch("CudaBackend::scale");
    }

    template <Real T>
    void axpy(T alpha, const Matrix<T>& a, Matrix<T>& out) const {
        const char* where = "CudaBackend::axpy";
        require(a.rows() == out.rows() && a.cols() == out.cols(), where, "A is ", shape_string(a.rows(), a.cols()),
                ", out is ", shape_string(out.rows(), out.cols()));
        if (out.size() == 0) return;
        const cuda_detail::DeviceGuard guard(self().device(), where);
        thrust_call(where, [&] {
            thrust::transform(thrust::cuda::par_nosync.on(self().stream()), a.data(), a.data() + a.size(), out.data(),
                              out.data(), cuda_detail::Axpy<T>{alpha});
        });
        check_launch(where);
    }

    template <Real T>
    void scale_columns(Matrix<T>& out, const std::vector<T>& factors) const {
        const char* where = "CudaBackend::scale_columns";
        require(static_cast<Index>(factors.size()) == out.cols(), where, factors.size(), " factors for a ",
                shape_string(out.rows(), out.cols()), " matrix");
        if (out.size() == 0) return;
        const cuda_detail::DeviceGuard guard(self().device(), where);
        const auto device_factors = self().to_device(factors, where);
        cuda_detail::for_each_index(
            out.size(), cuda_detail::ScaleColumns<T>{out.data(), static_cast<const T*>(device_factors.data()), out.rows()},
            self().stream(), where);
    }

    template <Real T>
    void scale_rows(Matrix<T>& out, const std::vector<T>& factors) const {
        const char* where = "CudaBackend::scale_rows";
        require(static_cast<Index>(factors.size()) == out.rows(), where, factors.size(), " factors for a ",
                shape_string(out.rows(), out.cols()), " matrix");
        if (out.size() == 0) return;
        const cuda_detail::DeviceGuard guard(self().device(), where);
        const auto device_factors = self().to_device(factors, where);
        cuda_detail::for_each_index(
            out.size(), cuda_detail::ScaleRows<T>{out.data(), static_cast<const T*>(device_factors.data()), out.rows()},
            self().stream(), where);
    }

    template <Real T>
    void add_to_diagonal(Matrix<T>& out, T alpha) const {
        const char* where = "CudaBackend::add_to_diagonal";
        const cuda_detail::DeviceGuard guard(self().device(), where);
        cuda_detail::for_each_index(std::min(out.rows(), out.cols()),
                                    cuda_detail::AddToDiagonal<T>{out.data(), out.ld(), alpha}, self().stream(), where);
    }

    template <Real T>
    T trace(const Matrix<T>& a) const {
        const char* where = "CudaBackend::trace";
        self().require_square(a, where);
        if (a.rows() == 0) return T(0);
        const cuda_detail::DeviceGuard guard(self().device(), where);
        const T sum = thrust_call(where, [&] {
            cuda_detail::StreamOrderedAllocator scratch{self().stream()};
            return thrust::transform_reduce(thrust::cuda::par(scratch).on(self().stream()), thrust::counting_iterator<Index>(0),
                                            thrust::counting_iterator<Index>(a.rows()),
                                            cuda_detail::DiagonalEntry<T>{a.data(), a.ld()}, T(0), thrust::plus<T>());
        });
        check_launch(where);
        return sum;
    }

    /// Signed maximum entry (float for 16-bit matrices).
    template <cuda_detail::DeviceScalar T>
    cuda_detail::accumulate_t<T> max_coeff(const Matrix<T>& a) const {
        const char* where = "CudaBackend::max_coeff";
        require(a.size() > 0, where, "empty matrix (", shape_string(a.rows(), a.cols()), ")");
        using A = cuda_detail::accumulate_t<T>;
        const cuda_detail::DeviceGuard guard(self().device(), where);
        const A result = thrust_call(where, [&] {
            cuda_detail::StreamOrderedAllocator scratch{self().stream()};
            return thrust::transform_reduce(thrust::cuda::par(scratch).on(self().stream()), a.data(), a.data() + a.size(),
                                            cuda_detail::ToAccumulate<T>{}, std::numeric_limits<A>::lowest(),
                                            cuda_detail::Maximum<A>{});
        });
        check_launch(where);
        return result;
    }

    /// sqrt(sum of squares), summed in T (float for 16-bit matrices), as Eigen's norm().
    template <cuda_detail::DeviceScalar T>
    cuda_detail::accumulate_t<T> frobenius_norm(const Matrix<T>& a) const {
        using A = cuda_detail::accumulate_t<T>;
        if (a.size() == 0) return A(0);
        const char* where = "CudaBackend::frobenius_norm";
        const cuda_detail::DeviceGuard guard(self().device(), where);
        const A sum = thrust_call(where, [&] {
            cuda_detail::StreamOrderedAllocator scratch{self().stream()};
            return thrust::transform_reduce(thrust::cuda::par(scratch).on(self().stream()), a.data(), a.data() + a.size(),
                                            cuda_detail::SquareAs<T>{}, A(0), thrust::plus<A>());
        });
        check_launch(where);
        return std::sqrt(sum);
    }

    /// sum_ij A_ij^2 accumulated in double.
    template <Real T>
    double sum_of_squares(const Matrix<T>& a) const {
        if (a.size() == 0) return 0.0;
        const char* where = "CudaBackend::sum_of_squares";
        const cuda_detail::DeviceGuard guard(self().device(), where);
        const double sum = thrust_call(where, [&] {
            cuda_detail::StreamOrderedAllocator scratch{self().stream()};
            return thrust::transform_reduce(thrust::cuda::par(scratch).on(self().stream()), a.data(), a.data() + a.size(),
                                            cuda_detail::SquareAsDouble<T>{}, 0.0, thrust::plus<double>());
        });
        check_launch(where);
        return sum;
    }

    /// sum_ij A_ij C_ij (the Frobenius inner product), A and C of one shape.
    template <cuda_detail::DeviceScalar T>
    cuda_detail::accumulate_t<T> dot(const Matrix<T>& a, const Matrix<T>& c) const {
        using A = cuda_detail::accumulate_t<T>;
        const char* where = "CudaBackend::dot";
        require(a.rows() == c.rows() && a.cols() == c.cols(), where, "A is ", shape_string(a.rows(), a.cols()),
                ", C is ", shape_string(c.rows(), c.cols()), " (need equal shapes)");
        if (a.size() == 0) return A(0);
        const cuda_detail::DeviceGuard guard(self().device(), where);
        const A sum = thrust_call(where, [&] {
            cuda_detail::StreamOrderedAllocator scratch{self().stream()};
            return thrust::inner_product(thrust::cuda::par(scratch).on(self().stream()), a.data(), a.data() + a.size(), c.data(),
                                         A(0), thrust::plus<A>(), cuda_detail::ProductAs<T>{});
        });
        check_launch(where);
        return sum;
    }

    /// No NaN, no Inf (true for an empty matrix).
    template <cuda_detail::DeviceScalar T>
    bool all_finite(const Matrix<T>& a) const {
        if (a.size() == 0) return true;
        const char* where = "CudaBackend::all_finite";
        const cuda_detail::DeviceGuard guard(self().device(), where);
        const bool any = thrust_call(where, [&] {
            cuda_detail::StreamOrderedAllocator scratch{self().stream()};
            return thrust::any_of(thrust::cuda::par(scratch).on(self().stream()), a.data(), a.data() + a.size(),
                                  cuda_detail::NotFinite<T>{});
        });
        check_launch(where);
        return !any;
    }

private:
    const Bk& self() const { return static_cast<const Bk&>(*this); }

    static void check_launch(const char* where) { LORANULL_CUDA_CHECK(cudaGetLastError(), where); }

    /// Runs a Thrust call, turning what Thrust throws (thrust::system_error for
    /// CUDA failures, bad_alloc for its temporary storage) into loranull::error.
    template <class F>
    static auto thrust_call(const char* where, F&& f) -> decltype(f()) {
        try {
            return f();
        } catch (const loranull::error&) {
            throw;
        } catch (const std::exception& e) {
            fail(where, "Thrust failed: ", e.what());
        }
    }
};

}  // namespace loranull
