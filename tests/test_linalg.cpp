// linalg/: the covariance accumulator, truncated eigensolvers, SVDs and the
// null space, on the CPU backend, in float and double, checked by invariants.
#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>

#include "test_util.hpp"

using namespace loranull;
using test::Mat;

namespace {
CpuBackend cpu;

}  // namespace

// --- Covariance ---------------------------------------------------------------

TEST_CASE_TEMPLATE("Covariance over a stream equals the one-shot Gram matrix", T, float, double) {
    for (Index n : {1, 7, 33}) {
        Mat<float> x = test::gaussian<float>(n, 101, 40 + n);
        Covariance<CpuBackend, T> cov(cpu, n, Normalisation::plain, "gaussian");
        for (Index start = 0; start < 101; start += 25)
            cov.add(Mat<float>(x.middleCols(start, std::min<Index>(25, 101 - start))));
        CHECK(cov.tokens() == 101);
        CHECK(cov.samples() == 5);
        Mat<double> xd = x.cast<double>();
        Mat<double> expected = xd * xd.transpose() / 101.0;
        Mat<T> c = cov.matrix();
        CHECK(c == c.transpose());
        CHECK(test::relative_error(c, expected) < 20 * test::eps<T>());
    }
}

TEST_CASE_TEMPLATE("Covariance accepts double activations and float accumulation", T, float, double) {
    Mat<T> x = test::gaussian<T>(9, 40, 3);
    Covariance<CpuBackend, float> cov(cpu, 9);
    cov.add(x);
    Mat<double> xd = x.template cast<double>();
    CHECK(test::relative_error(cov.matrix(), Mat<double>(xd * xd.transpose() / 40.0)) < 20 * test::eps<float>());
}

TEST_CASE("Covariance, fp32 panels: each add's X X^T in float, summed in double") {
    for (Normalisation normalisation : {Normalisation::plain, Normalisation::reference}) {
        for (Index n : {1, 7, 130}) {
            const Mat<float> x = test::gaussian<float>(n, 600, 50 + n);  // 3 chunks of 2 samples of 100
            Covariance<CpuBackend, double> fp64(cpu, n, normalisation), panels(cpu, n, normalisation);
            panels.set_accumulation(Accumulation::fp32_panels);
            CHECK(panels.accumulation() == Accumulation::fp32_panels);
            for (Index start = 0; start < 600; start += 200) {
                const Mat<float> chunk = x.middleCols(start, 200);
                const std::vector<double> s64 = fp64.add_samples(chunk, 100), s32 = panels.add_samples(chunk, 100);
                CHECK(s64 == s32);  // the same c_k^2 either way
                CHECK(s64.size() == 2);
                if (normalisation == Normalisation::plain) CHECK(s64 == std::vector<double>{1.0, 1.0});
                else CHECK(s64[1] == doctest::Approx(std::pow(double(chunk.middleCols(100, 100).maxCoeff()), 2)));
            }
            CHECK(panels.tokens() == 600);
            CHECK(panels.samples() == 6);
            // float rounding of one panel of 200 products: ~sqrt(200) eps_f, not eps_d.
            const double error = test::relative_error(panels.matrix(), fp64.matrix());
            CHECK(error < 20 * test::eps<float>());
            if (n > 1) CHECK(error > 0);
        }
    }
    Covariance<CpuBackend, double> c(cpu, 3);
    CHECK(c.epsilon() == std::numeric_limits<double>::epsilon());
    c.set_accumulation(Accumulation::fp32_panels);
    CHECK(c.epsilon() == double(std::numeric_limits<float>::epsilon()));
    // Double activations take the exact route whatever the setting.
    const Mat<double> xd = test::gaussian<double>(3, 20, 9);
    c.add(xd);
    CHECK(test::relative_error(c.matrix(), Mat<double>(xd * xd.transpose() / 20.0)) < 1e-15);
    // Products beyond float's range are refused, naming the remedy.
    Covariance<CpuBackend, double> big(cpu, 2);
    big.set_accumulation(Accumulation::fp32_panels);
    Mat<float> huge = Mat<float>::Constant(2, 4, 1e20f);
    CHECK(test::error_message([&] { big.add(huge); }).find("use the fp64 accumulation") != std::string::npos);
    CHECK(parse_accumulation("fp32-panels") == Accumulation::fp32_panels);
    CHECK(accumulation_name(Accumulation::fp64) == "fp64");
    CHECK_THROWS_AS(parse_accumulation("fp32"), loranull::error);
}

TEST_CASE("null_space of an fp32-panel covariance: eigenvalues made negative by float rounding are clamped, not refused") {
    // Rank 5 of 12: seven exact zeros, which float panels turn into +-1e-8-ish values.
    const Mat<float> x = (test::gaussian<double>(12, 5, 60) * test::gaussian<double>(5, 400, 61)).cast<float>();
    Covariance<CpuBackend, double> panels(cpu, 12);
    panels.set_accumulation(Accumulation::fp32_panels);
    panels.add(x);
    const NullSpace<CpuBackend, double> ns = null_space(panels, 7);  // not refused as "not PSD"
    CHECK(ns.rank_report.largest_eigenvalue > 0);
    CHECK(ns.rank_report.rounding_floor ==
          doctest::Approx(10 * std::numeric_limits<float>::epsilon() * ns.rank_report.largest_eigenvalue));
    CHECK(ns.rank_report.tolerance ==
          doctest::Approx(10 * std::numeric_limits<double>::epsilon() * ns.rank_report.largest_eigenvalue));
    // The seven float-rounded zeros lie far below 1e-7 lambda_max: what the
    // builder's fp32-panel warning looks at.
    CHECK(ns.eigenvalues.back() < 1e-7 * ns.rank_report.largest_eigenvalue);
    // The same data accumulated in fp64: exact zeros, seen as such.
    Covariance<CpuBackend, double> exact(cpu, 12);
    exact.add(x);
    CHECK(null_space(exact, 7).rank_report.zero_eigenvalues_seen == 7);
    CHECK(null_space(exact, 7).rank_report.rounding_floor == null_space(exact, 7).rank_report.tolerance);
}

TEST_CASE("Covariance, reference normalisation: per-sample signed max, constant divisor") {
    const Index n = 6;
    Mat<double> x1 = test::gaussian<double>(n, 10, 1), x2 = test::gaussian<double>(n, 10, 2);
    x2 = (x2.array() - 3.0).matrix();  // all-negative-ish sample: max is small, |max| != max|.|
    Covariance<CpuBackend, double> cov(cpu, n, Normalisation::reference, "ref", 256.0);
    cov.add(x1);
    cov.add(x2);
    Mat<double> expected = Mat<double>::Zero(n, n);
    for (const Mat<double>* x : {&x1, &x2}) {
        const double c = std::abs(x->maxCoeff());  // the signed max, then | . |
        expected += (*x / c) * (*x / c).transpose();
    }
    expected /= 256.0;
    CHECK(test::relative_error(cov.matrix(), expected) < 1e-14);
    CHECK(cov.normaliser() == 256.0);

    // add_samples on the side-by-side batch equals add() per sample.
    Mat<double> both(n, 20);
    both << x1, x2;
    Covariance<CpuBackend, double> batched(cpu, n, Normalisation::reference, "ref", 256.0);
    batched.add_samples(both, 10);
    CHECK(batched.samples() == 2);
    CHECK(test::relative_error(batched.matrix(), cov.matrix()) < 1e-15);

    // A sample whose maximum is exactly 0 cannot be normalised: clear error.
    Mat<double> zero_max = -Mat<double>::Ones(n, 4);
    zero_max(0, 0) = 0;
    const std::string message = test::error_message([&] { cov.add(zero_max); });
    CHECK(message.find("max X is 0") != std::string::npos);
}

TEST_CASE_TEMPLATE("Covariance merge equals the accumulator of the union", T, float, double) {
    for (Normalisation norm : {Normalisation::plain, Normalisation::reference}) {
        Mat<float> a = test::gaussian<float>(12, 30, 5), b = test::gaussian<float>(12, 17, 6);
        Covariance<CpuBackend, T> left(cpu, 12, norm, "shard0"), right(cpu, 12, norm, "shard1"),
            whole(cpu, 12, norm, "all");
        left.add(a);
        right.add(b);
        whole.add(a);
        whole.add(b);
        left.merge(right);
        CHECK(left.tokens() == 47);
        CHECK(left.samples() == 2);
        CHECK(left.data_id() == "shard0+shard1");
        CHECK(test::relative_error(left.matrix(), whole.matrix()) < 10 * test::eps<T>());
    }
}

TEST_CASE("Covariance rejects bad input with messages that name the problem") {
    Covariance<CpuBackend> cov(cpu, 4);
    auto contains = [](const std::string& message, const char* part) {
        INFO(message);
        CHECK(message.find(part) != std::string::npos);
    };
    contains(test::error_message([&] { cov.matrix(); }), "no activations were added");
    contains(test::error_message([&] { cov.add(Mat<float>(5, 3)); }), "X has 5 rows, expected 4");
    Mat<float> bad = Mat<float>::Ones(4, 3);
    bad(1, 1) = std::numeric_limits<float>::quiet_NaN();
    contains(test::error_message([&] { cov.add(bad); }), "NaN or Inf");
    bad(1, 1) = std::numeric_limits<float>::infinity();
    contains(test::error_message([&] { cov.add(bad); }), "NaN or Inf");
    CHECK(cov.empty());  // nothing was added by the failed calls
    contains(test::error_message([&] { cov.add_samples(Mat<float>(Mat<float>::Ones(4, 7)), 3); }), "not a positive multiple");
    contains(test::error_message([&] { Covariance<CpuBackend> c(cpu, 0); }), "dimension must be positive");
    Covariance<CpuBackend> other_dim(cpu, 5), other_norm(cpu, 4, Normalisation::reference);
    contains(test::error_message([&] { cov.merge(other_dim); }), "dimensions differ: 4 and 5");
    contains(test::error_message([&] { cov.merge(other_norm); }), "normalisations differ");
    Covariance<CpuBackend> other_divisor(cpu, 4, Normalisation::reference, "", 128.0);
    contains(test::error_message([&] { other_norm.merge(other_divisor); }), "normalisations differ");
    contains(test::error_message([&] { Covariance<CpuBackend> c(cpu, 4, Normalisation::reference, "", 0.0); }),
             "reference_divisor");
}

// --- symmetric eigensolvers ---------------------------------------------------

/// Davis-Kahan: a computed k-dimensional eigenspace is within about
/// eps * ||C||_2 / gap of the true one, gap = lambda_k - lambda_{k-1} (ascending).
/// The tests allow c * n times that.
template <class T>
double subspace_tolerance(const std::vector<double>& ascending, Index k, double norm) {
    if (k == static_cast<Index>(ascending.size())) return 100 * test::eps<T>() * std::sqrt(double(k));
    const double gap = ascending[k] - ascending[k - 1];
    return 10 * double(ascending.size()) * test::eps<T>() * norm / gap;
}

TEST_CASE_TEMPLATE("smallest_eigenpairs: C V = V D, orthonormal, below every other eigenvalue", T, float, double) {
    for (Index n : {1, 7, 33, 130}) {
        std::vector<double> spectrum(n);
        for (Index i = 0; i < n; ++i) spectrum[i] = double(n - i) / double(n);  // PSD, gaps 1/n
        Mat<T> c = test::symmetric_with_spectrum<T>(spectrum, 200 + n);
        const auto all = cpu_reference::symmetric_eigen<double>(c.template cast<double>());
        for (Index k : {Index(1), std::min<Index>(5, n), n}) {
            auto pairs = smallest_eigenpairs(cpu, c, k);
            REQUIRE(static_cast<Index>(pairs.values.size()) == k);
            Mat<T> d = Eigen::Map<Eigen::Vector<T, Eigen::Dynamic>>(pairs.values.data(), k).asDiagonal();
            CHECK((c * pairs.vectors - pairs.vectors * d).norm() / c.norm() < 10 * n * test::eps<T>());
            CHECK(test::orthonormality_error(pairs.vectors) < 10 * n * test::eps<T>());
            // Ascending |lambda|, and no eigenvalue outside is smaller in magnitude.
            for (Index i = 1; i < k; ++i) CHECK(std::abs(pairs.values[i - 1]) <= std::abs(pairs.values[i]));
            const double largest_inside = std::abs(double(pairs.values[k - 1]));
            for (Index i = k; i < n; ++i) CHECK(std::abs(all.values[i]) >= largest_inside - 10 * n * test::eps<T>());
            // Same subspace as the oracle's k smallest (the spectrum is well separated).
            CHECK(test::projector_distance(pairs.vectors, Mat<double>(all.vectors.leftCols(k))) <
                  subspace_tolerance<T>(all.values, k, 1.0));
        }
    }
}

TEST_CASE_TEMPLATE("smallest_eigenpairs orders by |lambda| on indefinite matrices", T, float, double) {
    // Large negative eigenvalues: the algebraically smallest are *not* the
    // smallest in magnitude; the solver must notice and find the ones near 0.
    std::vector<double> spectrum = {-50, -40, -0.3, -0.01, 0.02, 0.2, 5, 9, 30, 60};
    Mat<T> c = test::symmetric_with_spectrum<T>(spectrum, 9);
    auto pairs = smallest_eigenpairs(cpu, c, 3);
    CHECK(pairs.values[0] == doctest::Approx(-0.01).epsilon(1e-3));
    CHECK(pairs.values[1] == doctest::Approx(0.02).epsilon(1e-3));
    CHECK(pairs.values[2] == doctest::Approx(0.2).epsilon(1e-3));
    // Rounding-negative tiny eigenvalues of a PSD matrix are ordered by |.|.
    std::vector<double> psd = {1e-9, 0.5, 1, 2, 3, 4};
    Mat<double> c2 = test::symmetric_with_spectrum<double>(psd, 10);
    auto small = smallest_eigenpairs(cpu, c2, 2);
    CHECK(std::abs(small.values[0]) <= std::abs(small.values[1]));
    CHECK(small.values[1] == doctest::Approx(0.5));
}

TEST_CASE_TEMPLATE("largest_eigenpairs returns the top values in descending order", T, float, double) {
    std::vector<double> spectrum = {-7, 0.1, 0.5, 2, 3, 11};
    Mat<T> c = test::symmetric_with_spectrum<T>(spectrum, 11);
    auto top = largest_eigenpairs(cpu, c, 2);
    CHECK(top.values[0] == doctest::Approx(11).epsilon(1e-4));
    CHECK(top.values[1] == doctest::Approx(3).epsilon(1e-4));
    Mat<T> d = Eigen::Map<Eigen::Vector<T, Eigen::Dynamic>>(top.values.data(), 2).asDiagonal();
    CHECK((c * top.vectors - top.vectors * d).norm() / c.norm() < 100 * test::eps<T>());
}

TEST_CASE("eigensolvers reject bad input") {
    Mat<double> c = test::symmetric_with_spectrum<double>({1, 2, 3}, 1);
    CHECK_THROWS_AS(smallest_eigenpairs(cpu, c, 0), loranull::error);
    CHECK_THROWS_AS(smallest_eigenpairs(cpu, c, 4), loranull::error);
    CHECK_THROWS_AS(largest_eigenpairs(cpu, c, -1), loranull::error);
    CHECK_THROWS_AS(symmetric_eigen(cpu, Mat<double>(2, 3)), loranull::error);
    c(1, 0) = std::numeric_limits<double>::quiet_NaN();
    CHECK(test::error_message([&] { smallest_eigenpairs(cpu, c, 1); }).find("NaN or Inf") != std::string::npos);
}

// --- SVDs ---------------------------------------------------------------------

TEST_CASE_TEMPLATE("truncated_svd keeps the largest or the smallest triplets", T, float, double) {
    std::vector<double> s = {10, 8, 6, 4, 2, 1, 0.5};
    Mat<T> a = test::matrix_with_singular_values<T>(40, 7, s, 3);
    const auto full = thin_svd(cpu, a);
    auto top = truncated_svd(cpu, a, 3);
    auto bottom = truncated_svd(cpu, a, 2, Triplets::smallest);
    CHECK(top.singular_values[0] == doctest::Approx(10).epsilon(1e-4));
    CHECK(top.singular_values[2] == doctest::Approx(6).epsilon(1e-4));
    CHECK(bottom.singular_values[0] == doctest::Approx(1).epsilon(1e-4));
    CHECK(bottom.singular_values[1] == doctest::Approx(0.5).epsilon(1e-4));
    CHECK(test::projector_distance(bottom.V, Mat<T>(full.V.rightCols(2))) < 1000 * test::eps<T>());
    CHECK(test::projector_distance(top.U, Mat<T>(full.U.leftCols(3))) < 1000 * test::eps<T>());
    CHECK_THROWS_AS(truncated_svd(cpu, a, 8), loranull::error);
    CHECK_THROWS_AS(truncated_svd(cpu, a, 0), loranull::error);
}

TEST_CASE_TEMPLATE("randomized_svd meets the Halko-Martinsson-Tropp bound on decaying spectra", T, float, double) {
    const Index m = 300, n = 120, k = 10;
    for (double decay : {0.7, 0.95}) {
        std::vector<double> s(n);
        for (Index i = 0; i < n; ++i) s[i] = std::pow(decay, double(i));
        Mat<T> a = test::matrix_with_singular_values<T>(m, n, s, 77);
        for (Index q : {0, 2}) {
            for (Index p : {5, 10}) {
                RandomizedSvdOptions options{p, q, 1234};
                auto r = randomized_svd(cpu, a, k, options);
                REQUIRE(r.U.cols() == k);
                REQUIRE(r.V.cols() == k);
                CHECK(test::orthonormality_error(r.U) < 100 * test::eps<T>() * m);
                CHECK(test::orthonormality_error(r.V) < 100 * test::eps<T>() * m);
                Mat<double> approx = r.U.template cast<double>() *
                                     Eigen::Map<const Eigen::Vector<T, Eigen::Dynamic>>(r.singular_values.data(), k)
                                         .template cast<double>()
                                         .asDiagonal() *
                                     r.V.template cast<double>().transpose();
                // Spectral norm of the residual, via the exact SVD of it.
                Mat<double> residual = a.template cast<double>() - approx;
                const double error = cpu.thin_svd(residual).singular_values[0];
                const double sigma = s[k];  // sigma_{k+1}
                const double factor = std::pow(1 + 11 * std::sqrt(double(k + p) * double(std::min(m, n))), 1.0 / (2 * q + 1));
                CHECK(error <= (1 + factor) * sigma + 100 * test::eps<T>());
                // Singular values never exceed the true ones (Q^T A is a compression).
                for (Index i = 0; i < k; ++i) CHECK(r.singular_values[i] <= s[i] * (1 + 100 * test::eps<T>()));
                if (q == 2 && decay == 0.7)  // with power iterations, strong decay: nearly exact
                    for (Index i = 0; i < k; ++i) CHECK(r.singular_values[i] == doctest::Approx(s[i]).epsilon(1e-3));
            }
        }
    }
}

TEST_CASE("randomized_svd is deterministic for a seed and validates its options") {
    Mat<double> a = test::gaussian<double>(50, 30, 5);
    auto r1 = randomized_svd(cpu, a, 4, {10, 1, 99});
    auto r2 = randomized_svd(cpu, a, 4, {10, 1, 99});
    CHECK(r1.U == r2.U);
    CHECK(r1.singular_values == r2.singular_values);
    CHECK_THROWS_AS(randomized_svd(cpu, a, 31), loranull::error);
    CHECK_THROWS_AS(randomized_svd(cpu, a, 3, {-1, 0, 0}), loranull::error);
    CHECK_THROWS_AS(randomized_svd(cpu, a, 3, {10, -2, 0}), loranull::error);
}

// --- null space ---------------------------------------------------------------

TEST_CASE_TEMPLATE("null_space: the r least-used directions, energy, projector-free project()", T, float, double) {
    const Index n = 40, r = 6;
    Mat<T> x = test::anisotropic_activations<T>(n, 400, 8, 0.9);  // eigenvalues ~0.81^i: all above float's noise floor
    Covariance<CpuBackend, T> cov(cpu, n);
    cov.add(x);
    auto ns = null_space(cov, r);
    REQUIRE(ns.basis.rows() == n);
    REQUIRE(ns.basis.cols() == r);
    CHECK_FALSE(ns.rank_report.deficient);
    CHECK(ns.rank_report.message().empty());
    CHECK(test::orthonormality_error(ns.basis) < 100 * test::eps<T>());

    const Mat<double> c = cov.matrix().template cast<double>();
    const auto oracle = cpu_reference::symmetric_eigen<double>(c);
    CHECK(test::projector_distance(ns.basis, Mat<double>(oracle.vectors.leftCols(r))) <
          subspace_tolerance<T>(oracle.values, r, oracle.values.back()));
    const double bottom = std::accumulate(oracle.values.begin(), oracle.values.begin() + r, 0.0);
    CHECK(ns.energy_fraction() == doctest::Approx(bottom / c.trace()).epsilon(1e-3));
    CHECK(ns.energy_fraction() < 2e-3);  // the decaying spectrum leaves little energy there
    // ||X^T U||_F^2 / tokens = sum of the r smallest eigenvalues (SPEC section 4's eps).
    Mat<double> xu = x.template cast<double>().transpose() * ns.basis.template cast<double>();
    CHECK(xu.squaredNorm() / 400.0 == doctest::Approx(bottom).epsilon(1e-3));

    Mat<T> w = test::gaussian<T>(9, n, 2);
    Mat<T> projected = ns.project(cpu, w);
    Mat<double> p = ns.basis.template cast<double>() * ns.basis.template cast<double>().transpose();
    CHECK(test::relative_error(projected, Mat<double>(w.template cast<double>() * p)) < 100 * test::eps<T>());
    CHECK_THROWS_AS(ns.project(cpu, test::gaussian<T>(9, n + 1, 2)), loranull::error);
}

TEST_CASE("null_space reports rank deficiency (too few tokens), or throws on request") {
    const Index n = 30, r = 4;
    Covariance<CpuBackend> cov(cpu, n, Normalisation::plain, "few tokens");
    cov.add(test::gaussian<double>(n, 20, 3));  // rank 20: 10 zero eigenvalues > r
    auto ns = null_space(cov, r);
    CHECK(ns.rank_report.deficient);
    CHECK(ns.rank_report.structural_zeros == 10);
    CHECK(ns.rank_report.zero_eigenvalues_seen == r + 1);
    CHECK(ns.rank_report.message().find("rank-deficient") != std::string::npos);
    CHECK(ns.energy_fraction() < 1e-12);
    NullSpaceOptions strict;
    strict.on_rank_deficient = OnRankDeficient::throw_error;
    CHECK(test::error_message([&] { null_space(cov, r, strict); }).find("calibrate with at least") != std::string::npos);

    // Exactly r zero eigenvalues is fine: the null space is then unique.
    Covariance<CpuBackend> enough(cpu, n);
    enough.add(test::gaussian<double>(n, n - r, 4));
    auto unique = null_space(enough, r, strict);
    CHECK_FALSE(unique.rank_report.deficient);
    CHECK(unique.rank_report.zero_eigenvalues_seen == r);

    // A full-rank float covariance whose eigenvalues span 4 decades is not
    // deficient: the default tolerance (10 eps lambda_max) sits far below
    // 1e-4 lambda_max.
    Covariance<CpuBackend, float> wide(cpu, 200);
    wide.add(test::anisotropic_activations<float>(200, 400, 12, std::pow(1e-2, 1.0 / 199)));
    auto wide_ns = null_space(wide, 16);
    INFO(wide_ns.rank_report.tolerance);
    CHECK_FALSE(wide_ns.rank_report.deficient);
    CHECK(wide_ns.rank_report.zero_eigenvalues_seen == 0);

    // A plain matrix (no token count) is judged by its computed eigenvalues alone.
    Mat<double> c = test::symmetric_with_spectrum<double>({0, 0, 0, 1, 2, 3}, 5);
    CHECK(null_space(cpu, c, 2).rank_report.deficient);
    CHECK_FALSE(null_space(cpu, c, 3).rank_report.deficient);
    CHECK_THROWS_AS(null_space(cpu, c, 0), loranull::error);
    CHECK_THROWS_AS(null_space(cpu, c, 7), loranull::error);
}
