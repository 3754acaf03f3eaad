#pragma once
// Every initialisation the LoRA-Null paper compares (SPEC.md sections 3 and 5),
// one function each, one call shape:
//
//     method(backend, W, [data,] LoraConfig{rank, alpha, seed}) -> LoraFactors
//
// W is m x n (out x in). Every result satisfies W = W_res + s B A with
// s = alpha / r: residual methods set W_res = W - s B A, and split the scale
// over the factors (B = U S^1/2 / sqrt(s), A = S^1/2 V^T / sqrt(s)) so that the
// product is right whatever s is.
//
//   lora        A ~ Kaiming-uniform U(-1/sqrt(n), 1/sqrt(n)) (or N(0, 1/r^2)), B = 0
//   pissa       top-r singular triplets of W (exact thin SVD)
//   pissa_fast  the same from a randomized SVD with q power iterations
//   milora      bottom-r singular triplets of W
//   corda_kpm   last r triplets of the SVD of W C_f, C from knowledge data
//   corda_ipm   first r triplets, C from task data
//   lora_null   W P with P the projector on C's null space, through M = W U_null
//   olora       thin QR of W: A = R[:r], B = Q[:, :r]
//   eva         A = the top-r eigenvectors of the task covariance, B = 0
//
// Data-driven methods take the Covariance accumulator of linalg/ (one
// calibration serves LoRA-Null, CorDA and EVA), a covariance given as a plain
// n x n matrix, or (LoRA-Null) a ready NullSpace. Their decompositions run in the covariance's precision
// (double by default) and the factors are cast to W's type last.

#include <cmath>
#include <concepts>
#include <type_traits>
#include <cstdint>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "loranull/backend/backend.hpp"
#include "loranull/core/error.hpp"
#include "loranull/core/random.hpp"
#include "loranull/linalg/covariance.hpp"
#include "loranull/linalg/null_space.hpp"
#include "loranull/linalg/svd.hpp"
#include "loranull/linalg/symmetric_eigen.hpp"
#include "loranull/lora/lora_linear.hpp"

namespace loranull {

struct LoraConfig {
    // A constructor rather than an aggregate, so that LoraConfig{r} and
    // LoraConfig{r, alpha} leave the rest at their defaults without
    // -Wmissing-field-initializers warnings in users' builds.
    LoraConfig(Index rank_ = 8, std::optional<double> alpha_ = {}, std::uint64_t seed_ = 0)
        : rank(rank_), alpha(alpha_), seed(seed_) {}

    Index rank = 8;
    std::optional<double> alpha;  // s = alpha / rank; unset means alpha = rank (s = 1, LoRA-Null's scripts)
    std::uint64_t seed = 0;       // for the random initialisations

    double scale() const { return alpha ? *alpha / static_cast<double>(rank) : 1.0; }
};

enum class LoraDistribution { kaiming_uniform, gaussian };

namespace detail {

template <class Bk, class M>
void check_weight(Bk& b, const M& w, const LoraConfig& config, const char* where) {
    require(w.rows() >= 1 && w.cols() >= 1, where, "W is ", shape_string(w.rows(), w.cols()));
    require(config.rank >= 1 && config.rank <= std::min(w.rows(), w.cols()), where, "rank r = ", config.rank,
            " for W of ", shape_string(w.rows(), w.cols()), " (need 1 <= r <= min(m, n) = ", std::min(w.rows(), w.cols()),
            ")");
    require(!config.alpha || (std::isfinite(*config.alpha) && *config.alpha > 0), where, "alpha = ",
            config.alpha.value_or(0), " (need a positive value; leave it unset for alpha = r)");
    require(b.all_finite(w), where, "W (", shape_string(w.rows(), w.cols()), ") holds NaN or Inf");
}

template <class Bk, Real Tc>
void check_covariance(const Covariance<Bk, Tc>& covariance, Index n, const char* where) {
    require(covariance.dim() == n, where, "covariance is ", shape_string(covariance.dim(), covariance.dim()),
            ", W has ", n, " columns");
    require(!covariance.empty(), where, "covariance is empty (no activations were added)");
}

/// A covariance given as a plain n x n matrix (computed elsewhere, or loaded).
template <class Bk, class Cm>
void check_covariance(const Cm& c, Index n, const char* where) {
    require(c.rows() == n && c.cols() == n, where, "covariance is ", shape_string(c.rows(), c.cols()), ", W has ", n,
            " columns");
}

template <class Bk, Real Tc>
matrix_t<Bk, Tc> covariance_matrix(const Covariance<Bk, Tc>& covariance) { return covariance.matrix(); }

template <class Cm>
const Cm& covariance_matrix(const Cm& c) { return c; }

/// Either a Covariance accumulator or a plain covariance matrix of backend Bk.
template <class C, class Bk>
concept CovarianceSource = requires(const C& c) {
    { covariance_matrix(c) } -> std::convertible_to<matrix_t<Bk, typename std::decay_t<decltype(covariance_matrix(c))>::Scalar>>;
};

/// Factors from singular triplets (U m x r, S, V n x r) of a matrix Z whose
/// rank-r part goes to the adapter:
///   B = U S^1/2 / sqrt(s),  A = S^1/2 V^T / sqrt(s),  W_res = W - s B A.
/// Computed in Tc, cast to W's type T last.
template <class Bk, class M, Real Tc>
LoraFactors<Bk, typename M::Scalar> factors_from_triplets(Bk& b, const M& w, const matrix_t<Bk, Tc>& u,
                                                          const std::vector<Tc>& s, const matrix_t<Bk, Tc>& v,
                                                          const LoraConfig& config, std::string method) {
    using T = typename M::Scalar;
    const double scale = config.scale();
    std::vector<Tc> root(s.size());
    for (std::size_t i = 0; i < s.size(); ++i)
        root[i] = static_cast<Tc>(std::sqrt(std::max<double>(double(s[i]), 0.0) / scale));
    matrix_t<Bk, Tc> up = u;                  // m x r
    b.scale_columns(up, root);
    matrix_t<Bk, Tc> down = b.transpose(v);   // r x n
    b.scale_rows(down, root);
    LoraFactors<Bk, T> out;
    out.scale = static_cast<T>(scale);
    out.method = std::move(method);
    if constexpr (std::is_same_v<T, Tc>) {
        out.B = std::move(up);
        out.A = std::move(down);
        out.W_res = w;
        b.gemm(Op::none, Op::none, static_cast<T>(-scale), out.B, out.A, T(1), out.W_res);
    } else {
        // W_res = W - s B A in the higher precision, then cast.
        matrix_t<Bk, Tc> w_res = b.template convert<Tc>(w);
        b.gemm(Op::none, Op::none, static_cast<Tc>(-scale), up, down, Tc(1), w_res);
        out.B = b.template convert<T>(up);
        out.A = b.template convert<T>(down);
        out.W_res = b.template convert<T>(w_res);
    }
    return out;
}

}  // namespace detail

/// Plain LoRA (PEFT's default): A random, B = 0, W unchanged.
template <class Bk, class M>
LoraFactors<Bk, typename M::Scalar> lora(Bk& b, const M& w, LoraConfig config,
                                         LoraDistribution distribution = LoraDistribution::kaiming_uniform) {
    using T = typename M::Scalar;
    detail::check_weight(b, w, config, "lora");
    Rng rng(config.seed);
    const Index r = config.rank, n = w.cols();
    LoraFactors<Bk, T> out;
    // Kaiming-uniform with a = sqrt(5): bound = sqrt(6 / ((1 + a^2) n)) = 1 / sqrt(n).
    out.A = distribution == LoraDistribution::kaiming_uniform
                ? b.upload(random_uniform<T>(r, n, rng, -1.0 / std::sqrt(double(n)), 1.0 / std::sqrt(double(n))))
                : b.upload(random_normal<T>(r, n, rng, 1.0 / double(r)));
    out.B = zeros<T>(b, w.rows(), r);
    out.W_res = w;
    out.scale = static_cast<T>(config.scale());
    out.method = distribution == LoraDistribution::kaiming_uniform ? "lora" : "lora-gaussian";
    return out;
}

/// PiSSA: the principal r singular triplets of W go to the adapter.
template <class Bk, class M>
LoraFactors<Bk, typename M::Scalar> pissa(Bk& b, const M& w, LoraConfig config) {
    detail::check_weight(b, w, config, "pissa");
    const auto svd = truncated_svd(b, w, config.rank, Triplets::largest);
    return detail::factors_from_triplets(b, w, svd.U, svd.singular_values, svd.V, config, "pissa");
}

/// PiSSA from a randomized SVD (PEFT's "pissa_niter_q"): q power iterations,
/// oversampling p (PEFT uses none; 10 is safer and nearly free).
template <class Bk, class M>
LoraFactors<Bk, typename M::Scalar> pissa_fast(Bk& b, const M& w, LoraConfig config, Index power_iterations = 4,
                                               Index oversampling = 10) {
    detail::check_weight(b, w, config, "pissa_fast");
    const auto svd = randomized_svd(b, w, config.rank, {oversampling, power_iterations, config.seed});
    return detail::factors_from_triplets(b, w, svd.U, svd.singular_values, svd.V, config,
                                         "pissa-fast-q" + std::to_string(power_iterations));
}

/// MiLoRA: the minor (smallest) r singular triplets of W go to the adapter.
template <class Bk, class M>
LoraFactors<Bk, typename M::Scalar> milora(Bk& b, const M& w, LoraConfig config) {
    detail::check_weight(b, w, config, "milora");
    const auto svd = truncated_svd(b, w, config.rank, Triplets::smallest);
    return detail::factors_from_triplets(b, w, svd.U, svd.singular_values, svd.V, config, "milora");
}

/// OLoRA: thin QR W = Q R; A = R[:r], B = Q[:, :r], W_res = W - s B A.
template <class Bk, class M>
LoraFactors<Bk, typename M::Scalar> olora(Bk& b, const M& w, LoraConfig config) {
    using T = typename M::Scalar;
    detail::check_weight(b, w, config, "olora");
    const M q = b.thin_q(w);                       // m x p
    const M r_factor = product(b, q, w, Op::transpose);  // p x n: R = Q^T W
    LoraFactors<Bk, T> out;
    out.B = columns(b, q, 0, config.rank);
    out.A = b.block(r_factor, 0, 0, config.rank, w.cols());
    out.scale = static_cast<T>(config.scale());
    out.W_res = w;
    b.gemm(Op::none, Op::none, -out.scale, out.B, out.A, T(1), out.W_res);
    out.method = "olora";
    return out;
}

/// LoRA-Null from a ready null space (U_null n x r, r = config.rank): the thin,
/// exact path of SPEC.md section 3. M = W U_null (m x r) = U_M S Q^T, then
///   B0 = U_M S^1/2 / sqrt(s),  A0 = S^1/2 Q^T U_null^T / sqrt(s),  W_res = W - W P.
/// B0 A0 s = U_M S Q^T U_null^T = W U_null U_null^T = W P; the m x n SVD of W P
/// is never computed. Rows of A0 lie in span(U_null).
template <class Bk, class M, Real Tc>
LoraFactors<Bk, typename M::Scalar> lora_null(Bk& b, const M& w, const NullSpace<Bk, Tc>& null_space, LoraConfig config) {
    const char* where = "lora_null";
    detail::check_weight(b, w, config, where);
    require(null_space.dim() == w.cols(), where, "null space is ", shape_string(null_space.dim(), null_space.rank()),
            ", W has ", w.cols(), " columns");
    require(null_space.rank() == config.rank, where, "null space has rank ", null_space.rank(), ", config asks for ",
            config.rank);
    matrix_t<Bk, Tc> m;  // m x r: W U_null, in the null space's precision (no copy of W when it is already)
    if constexpr (std::is_same_v<typename M::Scalar, Tc>) m = product(b, w, null_space.basis);
    else m = product(b, b.template convert<Tc>(w), null_space.basis);
    const auto svd = b.thin_svd(m);                                   // U_M (m x r), S, Q (r x r)
    const matrix_t<Bk, Tc> v = product(b, null_space.basis, svd.V);  // n x r: U_null Q
    return detail::factors_from_triplets(b, w, svd.U, svd.singular_values, v, config, "lora-null");
}

/// LoRA-Null from the knowledge covariance: null space of rank r, then the thin path.
template <class Bk, class M, Real Tc>
LoraFactors<Bk, typename M::Scalar> lora_null(Bk& b, const M& w, const Covariance<Bk, Tc>& covariance, LoraConfig config,
                                              NullSpaceOptions options = {}) {
    detail::check_weight(b, w, config, "lora_null");
    detail::check_covariance(covariance, w.cols(), "lora_null");
    return lora_null(b, w, null_space(covariance, config.rank, options), config);
}

/// LoRA-Null from a covariance given as an n x n matrix (no token count, so the
/// rank report judges by the computed eigenvalues alone).
template <class Bk, class M, class Cm>
    requires std::same_as<Cm, matrix_t<Bk, typename Cm::Scalar>>
LoraFactors<Bk, typename M::Scalar> lora_null(Bk& b, const M& w, const Cm& covariance, LoraConfig config,
                                              NullSpaceOptions options = {}) {
    detail::check_weight(b, w, config, "lora_null");
    detail::check_covariance<Bk>(covariance, w.cols(), "lora_null");
    return lora_null(b, w, null_space(b, covariance, config.rank, options), config);
}

namespace detail {

/// CorDA (SPEC.md section 5): C_f = C + d mean(diag C) I with d = 0.01 doubled
/// until ||C_f C_f^-1 - I||_F < 0.05; SVD W C_f = U S V^T; V^ = C_f^-1 V (so
/// that U S V^^T = W); KPM keeps the last r triplets, IPM the first r. C_f^-1 is
/// taken from C's eigendecomposition (C = E L E^T, C_f^-1 = E (L + delta)^-1 E^T),
/// which makes every damping step cheap.
template <class Bk, class M, class Source>
auto corda(Bk& b, const M& w, const Source& covariance, LoraConfig config, Triplets which, const char* where,
           const char* method) {
    check_weight(b, w, config, where);
    check_covariance<Bk>(covariance, w.cols(), where);
    const Index n = w.cols();
    const auto c = covariance_matrix(covariance);
    using Tc = typename std::decay_t<decltype(c)>::Scalar;
    require(b.all_finite(c), where, "covariance holds NaN or Inf");
    const auto eig = b.symmetric_eigen(c);
    const double mean_diagonal = double(b.trace(c)) / double(n);
    require(mean_diagonal > 0, where, "covariance has a zero diagonal");
    matrix_t<Bk, Tc> c_damped, c_inverse;  // set by the damping loop
    double damping = 0.01;
    for (int attempt = 0;; ++attempt) {
        const double delta = damping * mean_diagonal;
        std::vector<Tc> inverse_values(eig.values.size());
        for (std::size_t i = 0; i < eig.values.size(); ++i)
            inverse_values[i] = static_cast<Tc>(1.0 / (double(eig.values[i]) + delta));
        matrix_t<Bk, Tc> scaled = eig.vectors;
        b.scale_columns(scaled, inverse_values);
        c_inverse = product(b, scaled, eig.vectors, Op::none, Op::transpose);
        c_damped = c;
        b.add_to_diagonal(c_damped, static_cast<Tc>(delta));
        matrix_t<Bk, Tc> check = product(b, c_damped, c_inverse);
        b.add_to_diagonal(check, Tc(-1));
        if (b.frobenius_norm(check) < Tc(0.05)) break;
        require(attempt < 30, where, "damping did not make C invertible (d = ", damping, ")");
        damping *= 2;
    }
    const matrix_t<Bk, Tc> wc = product(b, b.template convert<Tc>(w), c_damped);  // m x n
    const auto svd = truncated_svd(b, wc, config.rank, which);
    const matrix_t<Bk, Tc> v_hat = product(b, c_inverse, svd.V);                  // n x r: C_f^-1 V
    return factors_from_triplets(b, w, svd.U, svd.singular_values, v_hat, config, method);
}

}  // namespace detail

/// CorDA, knowledge-preserved mode: C from knowledge data (a Covariance or an
/// n x n matrix), the last r triplets.
template <class Bk, class M, detail::CovarianceSource<Bk> Source>
LoraFactors<Bk, typename M::Scalar> corda_kpm(Bk& b, const M& w, const Source& covariance, LoraConfig config) {
    return detail::corda(b, w, covariance, config, Triplets::smallest, "corda_kpm", "corda-kpm");
}

/// CorDA, instruction-previewed mode: C from task data, the first r triplets.
template <class Bk, class M, detail::CovarianceSource<Bk> Source>
LoraFactors<Bk, typename M::Scalar> corda_ipm(Bk& b, const M& w, const Source& covariance, LoraConfig config) {
    return detail::corda(b, w, covariance, config, Triplets::largest, "corda_ipm", "corda-ipm");
}

/// EVA: A = the top-r eigenvectors of the task covariance (the top right-singular
/// vectors of the task activations), B = 0, W unchanged.
template <class Bk, class M, detail::CovarianceSource<Bk> Source>
LoraFactors<Bk, typename M::Scalar> eva(Bk& b, const M& w, const Source& covariance, LoraConfig config) {
    using T = typename M::Scalar;
    detail::check_weight(b, w, config, "eva");
    detail::check_covariance<Bk>(covariance, w.cols(), "eva");
    const auto top = largest_eigenpairs(b, detail::covariance_matrix(covariance), config.rank);
    LoraFactors<Bk, T> out;
    out.A = b.template convert<T>(b.transpose(top.vectors));  // r x n
    out.B = zeros<T>(b, w.rows(), config.rank);
    out.W_res = w;
    out.scale = static_cast<T>(config.scale());
    out.method = "eva";
    return out;
}

}  // namespace loranull
