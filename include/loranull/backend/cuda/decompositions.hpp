#pragma once
// The CUDA backend's decompositions through cuSOLVER: cusolverDnXsyevd (all
// eigenpairs), cusolverDnXsyevdx (an index range), cusolverDnXgesvd (thin SVD;
// m < n through the SVD of A^T), ?geqrf + ?orgqr (thin Q). Every call's devInfo
// is copied back and checked; eigen- and singular values come to the host.
//
// A CRTP base of CudaBackend (cuda_backend.hpp): Bk is CudaBackend, whose
// cuda_detail::CudaContext base (context.hpp) provides the device, the stream,
// the library handles, the workspace and the small helpers used here.
// Included only from .cu translation units.

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include <cusolverDn.h>

#include "loranull/backend/backend.hpp"
#include "loranull/backend/cuda/check.hpp"
#include "loranull/backend/cuda/context.hpp"
#include "loranull/backend/cuda/device_matrix.hpp"
#include "loranull/core/error.hpp"
#include "loranull/core/types.hpp"

namespace loranull {

template <class Bk>
class CudaDecompositions {
    template <class T>
    using Matrix = DeviceMatrix<T>;

public:
    /// All eigenpairs, ascending: cusolverDnXsyevd on a copy (lower triangle read).
    template <Real T>
    SymmetricEigen<T, Matrix<T>> symmetric_eigen(const Matrix<T>& a) const {
        const char* where = "CudaBackend::symmetric_eigen";
        self().require_square(a, where);
        SymmetricEigen<T, Matrix<T>> out;
        const Index n = a.rows();
        if (n == 0) {
            out.vectors = self().template zeros<T>(0, 0);
            return out;
        }
        const cuda_detail::DeviceGuard guard(self().device(), where);
        out.vectors = self().clone(a);  // overwritten by the eigenvectors
        Matrix<T> values(n, 1, self().stream_handle());
        constexpr cudaDataType type = cuda_detail::data_type<T>();
        std::size_t device_bytes = 0, host_bytes = 0;
        LORANULL_CUSOLVER_CHECK(cusolverDnXsyevd_bufferSize(self().cusolver(), self().params(), CUSOLVER_EIG_MODE_VECTOR,
                                                            CUBLAS_FILL_MODE_LOWER, n, type, out.vectors.data(),
                                                            out.vectors.ld(), type, values.data(), type, &device_bytes,
                                                            &host_bytes),
                                where);
        self().reserve_workspace(device_bytes, host_bytes);
        LORANULL_CUSOLVER_CHECK(cusolverDnXsyevd(self().cusolver(), self().params(), CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n,
                                                 type, out.vectors.data(), out.vectors.ld(), type, values.data(), type,
                                                 self().workspace(), device_bytes, self().host_workspace(), host_bytes,
                                                 self().dev_info()),
                                where);
        cuda_detail::check_dev_info(self().dev_info(), self().stream(), "cusolverDnXsyevd", where);
        out.values = self().download_vector(values, n, where);
        return out;
    }

    /// Pairs first .. first + count - 1 (0-based, ascending):
    /// cusolverDnXsyevdx with range 'I' (1-based il = first + 1, iu = first + count).
    template <Real T>
    SymmetricEigen<T, Matrix<T>> symmetric_eigen_range(const Matrix<T>& a, Index first, Index count) const {
        const char* where = "CudaBackend::symmetric_eigen_range";
        self().require_square(a, where);
        require(first >= 0 && count >= 0 && first + count <= a.rows(), where, "pairs ", first, " .. ", first + count - 1,
                " requested of a ", shape_string(a.rows(), a.cols()), " matrix");
        SymmetricEigen<T, Matrix<T>> out;
        const Index n = a.rows();
        if (count == 0) {
            out.vectors = self().template zeros<T>(n, 0);
            return out;
        }
        const cuda_detail::DeviceGuard guard(self().device(), where);
        Matrix<T> work = self().clone(a);  // its first `found` columns become the eigenvectors
        Matrix<T> values(n, 1, self().stream_handle());
        constexpr cudaDataType type = cuda_detail::data_type<T>();
        T vl = T(0), vu = T(0);  // not referenced with range 'I'
        const std::int64_t il = first + 1, iu = first + count;
        std::int64_t found = 0;
        std::size_t device_bytes = 0, host_bytes = 0;
        LORANULL_CUSOLVER_CHECK(cusolverDnXsyevdx_bufferSize(self().cusolver(), self().params(), CUSOLVER_EIG_MODE_VECTOR,
                                                             CUSOLVER_EIG_RANGE_I, CUBLAS_FILL_MODE_LOWER, n, type,
                                                             work.data(), work.ld(), &vl, &vu, il, iu, &found, type,
                                                             values.data(), type, &device_bytes, &host_bytes),
                                where);
        self().reserve_workspace(device_bytes, host_bytes);
        LORANULL_CUSOLVER_CHECK(cusolverDnXsyevdx(self().cusolver(), self().params(), CUSOLVER_EIG_MODE_VECTOR, CUSOLVER_EIG_RANGE_I,
                                                  CUBLAS_FILL_MODE_LOWER, n, type, work.data(), work.ld(), &vl, &vu, il,
                                                  iu, &found, type, values.data(), type, self().workspace(), device_bytes,
                                                  self().host_workspace(), host_bytes, self().dev_info()),
                                where);
        cuda_detail::check_dev_info(self().dev_info(), self().stream(), "cusolverDnXsyevdx", where);
        require(found == count, where, "cuSOLVER returned ", found, " pairs, expected ", count);
        out.values = self().download_vector(values, count, where);
        out.vectors = count == n ? std::move(work) : self().block(work, 0, 0, n, count);
        return out;
    }

    /// Thin SVD, p = min(m, n), singular values descending: cusolverDnXgesvd
    /// (jobu = jobvt = 'S'). gesvd needs m >= n; a wide A is decomposed as
    /// A^T = U' S V'^T, so A = V' S U'^T: U = V', V = U'.
    template <Real T>
    ThinSvd<T, Matrix<T>> thin_svd(const Matrix<T>& a) const {
        const char* where = "CudaBackend::thin_svd";
        const Index m = a.rows(), n = a.cols(), p = std::min(m, n);
        ThinSvd<T, Matrix<T>> out;
        if (p == 0) {
            out.U = self().template zeros<T>(m, 0);
            out.V = self().template zeros<T>(n, 0);
            return out;
        }
        const cuda_detail::DeviceGuard guard(self().device(), where);
        const bool wide = m < n;
        Matrix<T> work = wide ? self().transpose(a) : self().clone(a);  // tall: rows >= cols, destroyed by gesvd
        const Index tm = work.rows(), tn = work.cols();   // tn == p
        Matrix<T> u(tm, tn, self().stream_handle()), vt(tn, tn, self().stream_handle()), s(tn, 1, self().stream_handle());
        constexpr cudaDataType type = cuda_detail::data_type<T>();
        std::size_t device_bytes = 0, host_bytes = 0;
        LORANULL_CUSOLVER_CHECK(cusolverDnXgesvd_bufferSize(self().cusolver(), self().params(), 'S', 'S', tm, tn, type, work.data(),
                                                            work.ld(), type, s.data(), type, u.data(), u.ld(), type,
                                                            vt.data(), vt.ld(), type, &device_bytes, &host_bytes),
                                where);
        self().reserve_workspace(device_bytes, host_bytes);
        LORANULL_CUSOLVER_CHECK(cusolverDnXgesvd(self().cusolver(), self().params(), 'S', 'S', tm, tn, type, work.data(), work.ld(),
                                                 type, s.data(), type, u.data(), u.ld(), type, vt.data(), vt.ld(), type,
                                                 self().workspace(), device_bytes, self().host_workspace(), host_bytes,
                                                 self().dev_info()),
                                where);
        cuda_detail::check_dev_info(self().dev_info(), self().stream(), "cusolverDnXgesvd", where);
        out.singular_values = self().download_vector(s, p, where);
        if (wide) {
            out.U = self().transpose(vt);   // m x m
            out.V = std::move(u);    // n x m
        } else {
            out.U = std::move(u);    // m x n
            out.V = self().transpose(vt);   // n x n
        }
        return out;
    }

    /// The m x min(m, n) Q of A = Q R: ?geqrf, then ?orgqr on the first
    /// min(m, n) columns.
    template <Real T>
    Matrix<T> thin_q(const Matrix<T>& a) const {
        const char* where = "CudaBackend::thin_q";
        const Index k = std::min(a.rows(), a.cols());
        if (k == 0) return self().template zeros<T>(a.rows(), 0);
        const cuda_detail::DeviceGuard guard(self().device(), where);
        Matrix<T> q = self().clone(a);
        Matrix<T> tau(k, 1, self().stream_handle());
        const int m = cuda_detail::to_int(a.rows(), where), n = cuda_detail::to_int(a.cols(), where), ik = cuda_detail::to_int(k, where);
        const int lda = cuda_detail::to_int(q.ld(), where);
        int lwork_qr = 0, lwork_q = 0;
        if constexpr (std::is_same_v<T, float>) {
            LORANULL_CUSOLVER_CHECK(cusolverDnSgeqrf_bufferSize(self().cusolver(), m, n, q.data(), lda, &lwork_qr), where);
            LORANULL_CUSOLVER_CHECK(cusolverDnSorgqr_bufferSize(self().cusolver(), m, ik, ik, q.data(), lda, tau.data(), &lwork_q),
                                    where);
        } else {
            LORANULL_CUSOLVER_CHECK(cusolverDnDgeqrf_bufferSize(self().cusolver(), m, n, q.data(), lda, &lwork_qr), where);
            LORANULL_CUSOLVER_CHECK(cusolverDnDorgqr_bufferSize(self().cusolver(), m, ik, ik, q.data(), lda, tau.data(), &lwork_q),
                                    where);
        }
        const int lwork = std::max({lwork_qr, lwork_q, 1});
        self().reserve_workspace(sizeof(T) * static_cast<std::size_t>(lwork), 0);
        T* work = static_cast<T*>(self().workspace());
        if constexpr (std::is_same_v<T, float>)
            LORANULL_CUSOLVER_CHECK(cusolverDnSgeqrf(self().cusolver(), m, n, q.data(), lda, tau.data(), work, lwork, self().dev_info()),
                                    where);
        else
            LORANULL_CUSOLVER_CHECK(cusolverDnDgeqrf(self().cusolver(), m, n, q.data(), lda, tau.data(), work, lwork, self().dev_info()),
                                    where);
        cuda_detail::check_dev_info(self().dev_info(), self().stream(), "cusolverDn?geqrf", where);
        if constexpr (std::is_same_v<T, float>)
            LORANULL_CUSOLVER_CHECK(cusolverDnSorgqr(self().cusolver(), m, ik, ik, q.data(), lda, tau.data(), work, lwork, self().dev_info()),
                                    where);
        else
            LORANULL_CUSOLVER_CHECK(cusolverDnDorgqr(self().cusolver(), m, ik, ik, q.data(), lda, tau.data(), work, lwork, self().dev_info()),
                                    where);
        cuda_detail::check_dev_info(self().dev_info(), self().stream(), "cusolverDn?orgqr", where);
        if (k == a.cols()) return q;
        return self().block(q, 0, 0, a.rows(), k);
    }

private:
    const Bk& self() const { return static_cast<const Bk&>(*this); }
};

}  // namespace loranull
