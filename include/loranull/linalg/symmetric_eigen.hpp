#pragma once
// Full and truncated eigendecompositions of a symmetric matrix, generic over
// the backend.
//
//   symmetric_eigen(b, C)          all pairs, ascending values      (?syevd)
//   smallest_eigenpairs(b, C, k)   the k pairs of smallest |lambda|  (?syevr)
//   largest_eigenpairs(b, C, k)    the k pairs of largest lambda     (?syevr)
//
// smallest_eigenpairs orders by |lambda| because rounding makes the tiny
// eigenvalues of a PSD covariance come out slightly negative (SPEC.md
// section 2). It computes only k + 1 pairs: when the (k+1)-th smallest value
// is at least |smallest value|, every pair outside the first k has
// |lambda| >= every pair inside, so the algebraically smallest k *are* the k
// smallest in magnitude. Otherwise (a genuinely indefinite matrix) it falls
// back to the full decomposition, so the answer is right for any symmetric C.

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "loranull/backend/backend.hpp"
#include "loranull/core/error.hpp"

namespace loranull {

namespace detail {

template <class Bk, class M>
void check_symmetric_input(Bk& b, const M& c, const char* where) {
    require(c.rows() == c.cols(), where, "C is ", shape_string(c.rows(), c.cols()), ", expected square");
    require(b.all_finite(c), where, "C (", shape_string(c.rows(), c.cols()), ") holds NaN or Inf");
}

template <class M>
void check_pair_count(const M& c, Index k, const char* where) {
    require(k >= 1 && k <= c.rows(), where, "k = ", k, " pairs requested of a ", shape_string(c.rows(), c.cols()),
            " matrix (need 1 <= k <= n)");
}

/// Reorders (values, vectors) by `order` (indices into the current pairs).
template <class Bk, class T, class M>
SymmetricEigen<T, M> pick_pairs(Bk& b, const SymmetricEigen<T, M>& pairs, const std::vector<Index>& order) {
    SymmetricEigen<T, M> out;
    out.values.reserve(order.size());
    for (Index i : order) out.values.push_back(pairs.values[static_cast<std::size_t>(i)]);
    out.vectors = b.select_columns(pairs.vectors, order);
    return out;
}

/// Indices 0..n-1 sorted by `key` (stable, so ties keep LAPACK's order).
template <class T, class Key>
std::vector<Index> sorted_indices(const std::vector<T>& values, Key key) {
    std::vector<Index> order(values.size());
    std::iota(order.begin(), order.end(), Index(0));
    std::stable_sort(order.begin(), order.end(), [&](Index a, Index c) {
        return key(values[static_cast<std::size_t>(a)]) < key(values[static_cast<std::size_t>(c)]);
    });
    return order;
}

}  // namespace detail

/// All eigenpairs of symmetric C (n x n), ascending values; C V = V diag(values).
template <class Bk, class M>
SymmetricEigen<typename M::Scalar, M> symmetric_eigen(Bk& b, const M& c) {
    detail::check_symmetric_input(b, c, "symmetric_eigen");
    return b.symmetric_eigen(c);
}

/// The k eigenpairs of symmetric C with the smallest |lambda|, ordered by
/// ascending |lambda|. Vectors are n x k with orthonormal columns.
template <class Bk, class M>
SymmetricEigen<typename M::Scalar, M> smallest_eigenpairs(Bk& b, const M& c, Index k) {
    using T = typename M::Scalar;
    const char* where = "smallest_eigenpairs";
    detail::check_symmetric_input(b, c, where);
    detail::check_pair_count(c, k, where);
    const auto magnitude = [](T v) { return std::abs(v); };
    const Index n = c.rows();
    if (k < n) {
        auto pairs = b.symmetric_eigen_range(c, 0, k + 1);
        if (pairs.values[static_cast<std::size_t>(k)] >= std::abs(pairs.values[0])) {
            pairs.values.pop_back();
            std::vector<Index> order = detail::sorted_indices(pairs.values, magnitude);
            return detail::pick_pairs(b, SymmetricEigen<T, M>{pairs.values, b.block(pairs.vectors, 0, 0, n, k)},
                                      order);
        }
    }
    const auto all = b.symmetric_eigen(c);  // k == n, or C has large negative eigenvalues
    std::vector<Index> order = detail::sorted_indices(all.values, magnitude);
    order.resize(static_cast<std::size_t>(k));
    return detail::pick_pairs(b, all, order);
}

/// The k eigenpairs of symmetric C with the largest (algebraic) values, in
/// descending order of the values.
template <class Bk, class M>
SymmetricEigen<typename M::Scalar, M> largest_eigenpairs(Bk& b, const M& c, Index k) {
    const char* where = "largest_eigenpairs";
    detail::check_symmetric_input(b, c, where);
    detail::check_pair_count(c, k, where);
    const auto pairs = b.symmetric_eigen_range(c, c.rows() - k, k);
    std::vector<Index> descending(static_cast<std::size_t>(k));
    std::iota(descending.rbegin(), descending.rend(), Index(0));
    return detail::pick_pairs(b, pairs, descending);
}

}  // namespace loranull
