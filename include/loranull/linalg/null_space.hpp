#pragma once
// The null space of pre-trained activations (SPEC.md section 2):
//
//     U_null = the r eigenvectors of C with the smallest |eigenvalues|   (n x r)
//
// computed with a truncated symmetric eigensolver (only r + 1 pairs, never a
// full SVD of C), plus what a user needs to trust it:
//   * energy_fraction = sum of the r smallest eigenvalues / trace(C), the share
//     of the calibration signal that reaches the adapter's input space;
//   * a rank report: when C has more than r (numerically) zero eigenvalues,
//     "the r smallest" is an arbitrary r-dimensional subspace of a larger null
//     space. That happens whenever tokens < n - r (rank C <= tokens), and is
//     reported, or thrown on request.
//   * project(W) = W U U^T without forming the n x n projector.

#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "loranull/backend/backend.hpp"
#include "loranull/core/error.hpp"
#include "loranull/core/random.hpp"
#include "loranull/linalg/covariance.hpp"
#include "loranull/linalg/symmetric_eigen.hpp"

namespace loranull {

/// Whether the chosen null space is well defined.
struct RankReport {
    Index rank = 0;                     // r
    Index dim = 0;                      // n
    Index zero_eigenvalues_seen = 0;    // of the r + 1 computed, how many |lambda| <= tolerance
    Index structural_zeros = 0;         // max(0, n - tokens) when the token count is known, else 0
    double tolerance = 0;               // absolute threshold for "numerically zero"
    double largest_eigenvalue = 0;      // lambda_max(C) as estimated for the tolerance (0: tolerance was given)
    double rounding_floor = 0;          // how negative rounding can make an eigenvalue (PSD check), >= tolerance
    bool deficient = false;             // more than r zero eigenvalues
    Index negative_eigenvalues_clamped = 0;  // of the r + 1: in [-rounding_floor, 0) from rounding, set to 0

    /// One line for logs; empty when not deficient.
    std::string message() const {
        if (!deficient) return {};
        return "covariance is rank-deficient: at least " + std::to_string(std::max(zero_eigenvalues_seen, structural_zeros)) +
               " of its " + std::to_string(dim) + " eigenvalues are zero, more than the rank r = " +
               std::to_string(rank) + ", so the null space is an arbitrary subspace of a larger one" +
               (structural_zeros > rank ? " (rank C <= tokens: calibrate with at least n - r = " +
                                              std::to_string(dim - rank) + " tokens)"
                                        : std::string());
    }
};

enum class OnRankDeficient { report, throw_error };

struct NullSpaceOptions {
    /// Eigenvalues with |lambda| <= tolerance count as zero; < 0 selects
    /// 10 * eps(T) * lambda_max(C) (and accepts negative eigenvalues down to
    /// -10 eps lambda_max as rounding, eps float's for a covariance whose
    /// products were formed in float: Covariance::epsilon()), lambda_max estimated by 8 power-iteration steps
    /// (the Rayleigh quotient: a lower bound, so the tolerance errs towards
    /// calling fewer eigenvalues zero).
    /// Why 10: the computed "zero" eigenvalues of exactly rank-deficient
    /// covariances (X X^T, X n x t, t < n, accumulated and decomposed in T)
    /// measured at most 1.9 eps lambda_max for n up to 1024 in float and 2.7 in
    /// double, while numpy's n * eps * sigma_max would call genuine eigenvalues
    /// of a float covariance (1e-5 lambda_max is common) zero.
    double zero_tolerance = -1;
    OnRankDeficient on_rank_deficient = OnRankDeficient::report;
};

template <class Bk, Real T>
struct NullSpace {
    using Matrix = matrix_t<Bk, T>;

    Matrix basis;                // n x r, orthonormal; column j <-> eigenvalues[j]
    std::vector<T> eigenvalues;  // r, ascending |lambda|
    T trace = 0;                 // trace(C)
    RankReport rank_report;

    Index dim() const { return basis.rows(); }
    Index rank() const { return basis.cols(); }

    /// sum(eigenvalues) / trace(C): the fraction of the calibration energy in
    /// the null space (0 when C is zero).
    double energy_fraction() const {
        if (trace == T(0)) return 0.0;
        const double sum = std::accumulate(eigenvalues.begin(), eigenvalues.end(), 0.0);
        return sum / static_cast<double>(trace);
    }

    /// W P = (W U) U^T for W (m x n), in O(m n r) flops; P = U U^T is never formed.
    Matrix project(Bk& b, const Matrix& w) const {
        require(w.cols() == dim(), "NullSpace::project", "W is ", shape_string(w.rows(), w.cols()),
                ", expected ", dim(), " columns");
        const Matrix wu = product(b, w, basis);   // m x r
        return product(b, wu, basis, Op::none, Op::transpose);  // m x n
    }
};

namespace detail {

/// A lower estimate of lambda_max of symmetric PSD C (n x n) from `iterations`
/// steps of the power method on a seeded random start: the Rayleigh quotient,
/// which never exceeds lambda_max and converges like (lambda_2 / lambda_1)^k.
/// O(n^2) per step, negligible next to the eigensolver.
template <class Bk, class M>
typename M::Scalar largest_eigenvalue_estimate(Bk& b, const M& c, Index iterations = 8) {
    using T = typename M::Scalar;
    Rng rng(0x10A2A);
    M v = b.upload(random_normal<T>(c.rows(), 1, rng));
    T estimate = 0;
    for (Index k = 0; k < iterations; ++k) {
        const T norm = b.frobenius_norm(v);
        if (norm == T(0)) return T(0);
        b.scale(T(1) / norm, v);
        M w = product(b, c, v);              // n x 1: C v
        estimate = b.trace(product(b, v, w, Op::transpose, Op::none));  // v^T C v (1 x 1), |v| = 1
        v = std::move(w);
    }
    return estimate;
}

template <class Bk, class M>
NullSpace<Bk, typename M::Scalar> null_space_impl(Bk& b, const M& c, Index r, std::int64_t tokens,
                                                 const NullSpaceOptions& options,
                                                 double products_epsilon = std::numeric_limits<typename M::Scalar>::epsilon()) {
    using T = typename M::Scalar;
    const char* where = "null_space";
    check_symmetric_input(b, c, where);
    const Index n = c.rows();
    require(r >= 1 && r <= n, where, "rank r = ", r, " of a ", shape_string(n, n), " covariance (need 1 <= r <= n)");

    NullSpace<Bk, T> out;
    // r + 1 pairs: the extra one tells whether the r-th is separated from zero.
    const Index wanted = std::min(r + 1, n);
    auto pairs = smallest_eigenpairs(b, c, wanted);
    out.trace = b.trace(c);

    RankReport& report = out.rank_report;
    report.rank = r;
    report.dim = n;
    const double eps = std::numeric_limits<T>::epsilon();
    if (options.zero_tolerance < 0) report.largest_eigenvalue = static_cast<double>(largest_eigenvalue_estimate(b, c));
    report.tolerance = options.zero_tolerance >= 0 ? options.zero_tolerance : 10.0 * eps * report.largest_eigenvalue;
    // Rounding makes exact zeros come out as tiny values of either sign; C is
    // PSD, so a negative one is a zero: clamped (and counted). The rounding of
    // C's products (float's, for fp32 panels: Covariance::epsilon()) bounds how
    // negative; one below that is no rounding: C is not a covariance. Zeros are
    // still counted at T's tolerance: an fp32-panel null space too deep to tell
    // is the build's warning (docs/math.md, "Accumulation"), not a deficiency.
    report.rounding_floor = options.zero_tolerance >= 0
                                ? options.zero_tolerance
                                : 10.0 * std::max(eps, products_epsilon) * report.largest_eigenvalue;
    for (T& v : pairs.values) {
        if (v >= T(0)) continue;
        require(-static_cast<double>(v) <= report.rounding_floor, where, "C is not positive semi-definite: eigenvalue ",
                v, " is below -", report.rounding_floor,
                " (rounding gives at most that; a covariance X X^T has no negative eigenvalue)");
        v = T(0);
        ++report.negative_eigenvalues_clamped;
    }
    for (T v : pairs.values)
        if (std::abs(static_cast<double>(v)) <= report.tolerance) ++report.zero_eigenvalues_seen;
    report.structural_zeros = tokens >= 0 ? std::max<Index>(0, n - static_cast<Index>(std::min<std::int64_t>(tokens, n))) : 0;
    report.deficient = report.zero_eigenvalues_seen > r || report.structural_zeros > r;
    if (report.deficient && options.on_rank_deficient == OnRankDeficient::throw_error) fail(where, report.message());

    out.eigenvalues.assign(pairs.values.begin(), pairs.values.begin() + r);
    out.basis = wanted == r ? std::move(pairs.vectors) : b.block(pairs.vectors, 0, 0, n, r);
    return out;
}

}  // namespace detail

/// Null space of rank r of a covariance matrix C (n x n, symmetric PSD).
/// (Constrained to backends: a Covariance and its matrix() take the overload
/// below.)
template <class Bk, class M>
    requires Backend<Bk>
NullSpace<Bk, typename M::Scalar> null_space(Bk& b, const M& c, Index r, NullSpaceOptions options = {}) {
    return detail::null_space_impl(b, c, r, -1, options);
}

/// Null space of rank r of an accumulated covariance; the token count sharpens
/// the rank report (rank C <= tokens).
/// C = covariance.matrix() may be given already formed (a caller that needs C
/// for more than the null space forms it once).
template <class Bk, Real T>
NullSpace<Bk, T> null_space(const Covariance<Bk, T>& covariance, const matrix_t<Bk, T>& c, Index r,
                            NullSpaceOptions options = {}) {
    require(c.rows() == covariance.dim() && c.cols() == covariance.dim(), "null_space", "C is ",
            shape_string(c.rows(), c.cols()), ", the covariance is ", shape_string(covariance.dim(), covariance.dim()));
    return detail::null_space_impl(covariance.backend(), c, r, covariance.tokens(), options, covariance.epsilon());
}

template <class Bk, Real T>
NullSpace<Bk, T> null_space(const Covariance<Bk, T>& covariance, Index r, NullSpaceOptions options = {}) {
    return null_space(covariance, covariance.matrix(), r, options);
}

}  // namespace loranull
