#pragma once
// Singular value decompositions, generic over the backend.
//
//   thin_svd(b, A)                    A = U diag(S) V^T, p = min(m, n)   (?gesdd)
//   truncated_svd(b, A, k, which)     the k largest or smallest triplets of it
//   randomized_svd(b, A, k, options)  the k largest, approximately (Halko,
//                                     Martinsson and Tropp 2011, Alg. 4.4 + 5.1)
//
// The randomized SVD with oversampling p >= 4 and q power iterations satisfies,
// with probability at least 1 - 6 p^-p (HMT eq. 1.9 applied to (A A^T)^q A,
// Thm. 9.2, then Thm. 9.3 for the truncation to rank k),
//     ||A - U_k S_k V_k^T||_2 <= (1 + (1 + 11 sqrt(k + p) sqrt(min(m, n)))^(1/(2q+1))) sigma_{k+1}
// which tests/test_linalg.cpp checks. Power iterations re-orthonormalise after
// every product (HMT Alg. 4.4): without that, float loses the small singular
// directions after one or two iterations.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "loranull/backend/backend.hpp"
#include "loranull/core/error.hpp"
#include "loranull/core/random.hpp"

namespace loranull {

enum class Triplets { largest, smallest };

namespace detail {

template <class Bk, class M>
void check_svd_input(Bk& b, const M& a, const char* where) {
    require(b.all_finite(a), where, "A (", shape_string(a.rows(), a.cols()), ") holds NaN or Inf");
}

template <class M>
void check_rank(const M& a, Index k, const char* where) {
    const Index p = std::min(a.rows(), a.cols());
    require(k >= 1 && k <= p, where, "rank k = ", k, " requested of a ", shape_string(a.rows(), a.cols()),
            " matrix (need 1 <= k <= min(m, n) = ", p, ")");
}

/// The first k triplets of a decomposition, kept in place.
template <class Bk, class T, class M>
ThinSvd<T, M> leading_triplets(Bk& b, const ThinSvd<T, M>& svd, Index first, Index k) {
    ThinSvd<T, M> out;
    out.U = b.block(svd.U, 0, first, svd.U.rows(), k);
    out.V = b.block(svd.V, 0, first, svd.V.rows(), k);
    out.singular_values.assign(svd.singular_values.begin() + first, svd.singular_values.begin() + first + k);
    return out;
}

}  // namespace detail

/// Thin SVD of A (m x n): U m x p, S descending, V n x p, p = min(m, n).
template <class Bk, class M>
ThinSvd<typename M::Scalar, M> thin_svd(Bk& b, const M& a) {
    detail::check_svd_input(b, a, "thin_svd");
    return b.thin_svd(a);
}

/// The k largest (or smallest) singular triplets of A from its exact thin SVD,
/// in descending order of the singular values either way.
template <class Bk, class M>
ThinSvd<typename M::Scalar, M> truncated_svd(Bk& b, const M& a, Index k, Triplets which = Triplets::largest) {
    const char* where = "truncated_svd";
    detail::check_svd_input(b, a, where);
    detail::check_rank(a, k, where);
    const auto svd = b.thin_svd(a);
    const Index p = std::min(a.rows(), a.cols());
    return detail::leading_triplets(b, svd, which == Triplets::largest ? 0 : p - k, k);
}

struct RandomizedSvdOptions {
    Index oversampling = 10;      // p: extra sample columns beyond k
    Index power_iterations = 2;   // q: passes of (A A^T), each re-orthonormalised
    std::uint64_t seed = 0;       // the Gaussian test matrix comes from Rng(seed)
};

/// Approximate k largest singular triplets of A (m x n) by a randomized range
/// finder. Deterministic for a given seed, on every backend (the test matrix is
/// drawn on the host).
template <class Bk, class M>
ThinSvd<typename M::Scalar, M> randomized_svd(Bk& b, const M& a, Index k, RandomizedSvdOptions options = {}) {
    using T = typename M::Scalar;
    const char* where = "randomized_svd";
    detail::check_svd_input(b, a, where);
    detail::check_rank(a, k, where);
    require(options.oversampling >= 0 && options.power_iterations >= 0, where,
            "oversampling and power_iterations must be >= 0, got ", options.oversampling, " and ",
            options.power_iterations);
    const Index m = a.rows(), n = a.cols();
    const Index l = std::min(k + options.oversampling, std::min(m, n));  // sample size

    Rng rng(options.seed);
    const M omega = b.upload(random_normal<T>(n, l, rng));  // n x l
    M q = b.thin_q(product(b, a, omega));                   // m x l, orthonormal basis of A Omega
    for (Index i = 0; i < options.power_iterations; ++i) {
        const M z = b.thin_q(product(b, a, q, Op::transpose));  // n x l, basis of A^T Q
        q = b.thin_q(product(b, a, z));                         // m x l, basis of A Z
    }
    const M small = product(b, q, a, Op::transpose);  // l x n: Q^T A
    auto svd = b.thin_svd(small);                     // Q^T A = Ub S V^T, Ub l x l
    svd.U = product(b, q, svd.U);                     // m x l: U = Q Ub
    return detail::leading_triplets(b, svd, 0, k);
}

}  // namespace loranull
