#pragma once
// Typed C++ wrappers over the few LAPACKE and CBLAS routines the CPU backend
// calls (OpenBLAS provides both; Debian's OpenBLAS exports no LAPACKE_*
// symbols, so liblapacke is linked too). Each wrapper is a template over float
// and double that picks the s/d routine, runs LAPACK's workspace query, and
// turns every info != 0 into loranull::error.
//
// Workspace sizes: LAPACK returns the optimal lwork of a query as a floating-
// point number. For ssyevd at n = 4096 that value (1 + 6n + 2n^2 = 33,579,009)
// is not representable in float and rounds *down*; the call then fails with
// info = -8. So every wrapper allocates max(query, documented minimum).

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include <cblas.h>
#include <lapacke.h>

#include "loranull/core/error.hpp"
#include "loranull/core/types.hpp"

namespace loranull::lapack {

/// Narrows a size to LAPACK's int, or throws.
inline lapack_int to_int(std::int64_t value, const char* where) {
    require(value >= 0 && value <= std::numeric_limits<lapack_int>::max(), where, "size ", value,
            " does not fit LAPACK's 32-bit integer");
    return static_cast<lapack_int>(value);
}

inline void check_info(lapack_int info, const char* routine) {
    if (info < 0) fail(routine, "LAPACK rejected argument ", -info, " (a bug in loranull)");
    if (info > 0) fail(routine, "LAPACK did not converge (info = ", info, ")");
}

/// max(query rounded up, minimum); see the file comment.
template <class T>
lapack_int workspace(T query, std::int64_t minimum, const char* where) {
    const auto rounded_up = static_cast<std::int64_t>(static_cast<double>(query)) + 1;
    return to_int(std::max(rounded_up, minimum), where);
}

template <class T>
constexpr bool is_float = std::is_same_v<T, float>;

/// All eigenpairs of the symmetric n x n matrix whose lower triangle is in `a`
/// (LAPACK ?syevd, divide and conquer). On return `a` holds the eigenvectors,
/// `w` the eigenvalues in ascending order.
template <Real T>
void syevd(lapack_int n, T* a, lapack_int lda, T* w) {
    constexpr const char* where = "lapack::syevd";
    if (n == 0) return;
    auto call = [&](T* work, lapack_int lwork, lapack_int* iwork, lapack_int liwork) {
        if constexpr (is_float<T>)
            return LAPACKE_ssyevd_work(LAPACK_COL_MAJOR, 'V', 'L', n, a, lda, w, work, lwork, iwork, liwork);
        else
            return LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'V', 'L', n, a, lda, w, work, lwork, iwork, liwork);
    };
    T work_query = 0;
    lapack_int iwork_query = 0;
    check_info(call(&work_query, -1, &iwork_query, -1), where);
    const std::int64_t n64 = n;
    std::vector<T> work(static_cast<std::size_t>(workspace(work_query, 1 + 6 * n64 + 2 * n64 * n64, where)));
    std::vector<lapack_int> iwork(static_cast<std::size_t>(std::max<std::int64_t>(iwork_query, 3 + 5 * n64)));
    check_info(call(work.data(), static_cast<lapack_int>(work.size()), iwork.data(),
                    static_cast<lapack_int>(iwork.size())),
               where);
}

/// Eigenpairs il..iu (1-based, ascending order of the values) of the symmetric
/// matrix whose lower triangle is in `a` (LAPACK ?syevr, RANGE = 'I'). `a` is
/// destroyed; `w` receives the values (it needs n entries), `z` the n x
/// (iu - il + 1) eigenvectors. Returns the number found.
template <Real T>
lapack_int syevr(lapack_int n, T* a, lapack_int lda, lapack_int il, lapack_int iu, T* w, T* z,
                 lapack_int ldz) {
    constexpr const char* where = "lapack::syevr";
    lapack_int found = 0;
    std::vector<lapack_int> isuppz(static_cast<std::size_t>(2 * std::max<lapack_int>(n, 1)));
    auto call = [&](T* work, lapack_int lwork, lapack_int* iwork, lapack_int liwork) {
        // abstol = 0: LAPACK's default eps * |T|_1 for the tridiagonal T.
        if constexpr (is_float<T>)
            return LAPACKE_ssyevr_work(LAPACK_COL_MAJOR, 'V', 'I', 'L', n, a, lda, 0, 0, il, iu, 0,
                                       &found, w, z, ldz, isuppz.data(), work, lwork, iwork, liwork);
        else
            return LAPACKE_dsyevr_work(LAPACK_COL_MAJOR, 'V', 'I', 'L', n, a, lda, 0, 0, il, iu, 0,
                                       &found, w, z, ldz, isuppz.data(), work, lwork, iwork, liwork);
    };
    T work_query = 0;
    lapack_int iwork_query = 0;
    check_info(call(&work_query, -1, &iwork_query, -1), where);
    const std::int64_t n64 = std::max<lapack_int>(n, 1);
    std::vector<T> work(static_cast<std::size_t>(workspace(work_query, 26 * n64, where)));
    std::vector<lapack_int> iwork(static_cast<std::size_t>(std::max<std::int64_t>(iwork_query, 10 * n64)));
    check_info(call(work.data(), static_cast<lapack_int>(work.size()), iwork.data(),
                    static_cast<lapack_int>(iwork.size())),
               where);
    return found;
}

/// Thin SVD A = U diag(s) VT of the m x n matrix `a` (LAPACK ?gesdd, JOBZ =
/// 'S'): u is m x min(m, n), vt is min(m, n) x n. `a` is destroyed.
template <Real T>
void gesdd(lapack_int m, lapack_int n, T* a, lapack_int lda, T* s, T* u, lapack_int ldu, T* vt,
           lapack_int ldvt) {
    constexpr const char* where = "lapack::gesdd";
    const std::int64_t mn = std::min(m, n), mx = std::max(m, n);
    if (mn == 0) return;
    std::vector<lapack_int> iwork(static_cast<std::size_t>(8 * mn));
    auto call = [&](T* work, lapack_int lwork) {
        if constexpr (is_float<T>)
            return LAPACKE_sgesdd_work(LAPACK_COL_MAJOR, 'S', m, n, a, lda, s, u, ldu, vt, ldvt,
                                       work, lwork, iwork.data());
        else
            return LAPACKE_dgesdd_work(LAPACK_COL_MAJOR, 'S', m, n, a, lda, s, u, ldu, vt, ldvt,
                                       work, lwork, iwork.data());
    };
    T work_query = 0;
    check_info(call(&work_query, -1), where);
    std::vector<T> work(static_cast<std::size_t>(
        workspace(work_query, 3 * mn + std::max(mx, 5 * mn * mn + 4 * mn), where)));
    check_info(call(work.data(), static_cast<lapack_int>(work.size())), where);
}

/// Overwrites the m x n matrix `a` with the m x min(m, n) factor Q of its QR
/// decomposition (LAPACK ?geqrf, then ?orgqr).
template <Real T>
void thin_q(lapack_int m, lapack_int n, T* a, lapack_int lda) {
    constexpr const char* where = "lapack::thin_q";
    const lapack_int k = std::min(m, n);
    if (k == 0) return;
    std::vector<T> tau(static_cast<std::size_t>(k));
    auto geqrf = [&](T* work, lapack_int lwork) {
        if constexpr (is_float<T>) return LAPACKE_sgeqrf_work(LAPACK_COL_MAJOR, m, n, a, lda, tau.data(), work, lwork);
        else return LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, m, n, a, lda, tau.data(), work, lwork);
    };
    auto orgqr = [&](T* work, lapack_int lwork) {
        if constexpr (is_float<T>) return LAPACKE_sorgqr_work(LAPACK_COL_MAJOR, m, k, k, a, lda, tau.data(), work, lwork);
        else return LAPACKE_dorgqr_work(LAPACK_COL_MAJOR, m, k, k, a, lda, tau.data(), work, lwork);
    };
    T query = 0;
    check_info(geqrf(&query, -1), where);
    std::vector<T> work(static_cast<std::size_t>(workspace(query, std::max<lapack_int>(1, n), where)));
    check_info(geqrf(work.data(), static_cast<lapack_int>(work.size())), where);
    check_info(orgqr(&query, -1), where);
    work.resize(static_cast<std::size_t>(workspace(query, std::max<lapack_int>(1, k), where)));
    check_info(orgqr(work.data(), static_cast<lapack_int>(work.size())), where);
}

/// c_lower = alpha * x x^T + beta * c_lower with x n x k (BLAS ?syrk, lower,
/// no transpose). beta = 0 ignores c's old contents.
template <Real T>
void syrk_lower(lapack_int n, lapack_int k, T alpha, const T* x, lapack_int ldx, T* c, lapack_int ldc, T beta = T(1)) {
    if (n == 0) return;
    if constexpr (is_float<T>)
        cblas_ssyrk(CblasColMajor, CblasLower, CblasNoTrans, n, k, alpha, x, ldx, beta, c, ldc);
    else
        cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, n, k, alpha, x, ldx, beta, c, ldc);
}

/// c = alpha op(a) op(b) + beta c, op(a) m x k, op(b) k x n, column-major
/// with leading dimensions (BLAS ?gemm). OpenBLAS's threads serve every
/// product, so no second thread pool (Eigen's OpenMP) spins against them
/// (docs/benchmarks.md, "one trap"). beta = 0 ignores c's old contents.
template <Real T>
void gemm(bool transpose_a, bool transpose_b, lapack_int m, lapack_int n, lapack_int k, T alpha, const T* a,
          lapack_int lda, const T* b, lapack_int ldb, T beta, T* c, lapack_int ldc) {
    if (m == 0 || n == 0) return;
    const CBLAS_TRANSPOSE ta = transpose_a ? CblasTrans : CblasNoTrans, tb = transpose_b ? CblasTrans : CblasNoTrans;
    if constexpr (is_float<T>)
        cblas_sgemm(CblasColMajor, ta, tb, m, n, k, alpha, a, std::max<lapack_int>(lda, 1), b,
                    std::max<lapack_int>(ldb, 1), beta, c, std::max<lapack_int>(ldc, 1));
    else
        cblas_dgemm(CblasColMajor, ta, tb, m, n, k, alpha, a, std::max<lapack_int>(lda, 1), b,
                    std::max<lapack_int>(ldb, 1), beta, c, std::max<lapack_int>(ldc, 1));
}

}  // namespace loranull::lapack
