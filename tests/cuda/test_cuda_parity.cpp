// CPU-vs-GPU parity, in the spirit of ggml's test-backend-ops: every primitive
// of the backend seam and every linalg algorithm runs on CpuBackend (here,
// Eigen + LAPACKE) and on CudaBackend (gpu_ops.cu) with the same random inputs
// (loranull::Rng, drawn on the host), at several sizes (1 x 1 and odd ones
// included), in float and double, and the results are compared with a
// normalised error:
//
//   matrices      ||G - C||_F / max(||C||_F, tiny)                (test::relative_error)
//   values        max_i |g_i - c_i| / max_i |c_i|
//   subspaces     ||U_g U_g^T - U_c U_c^T||_F, never raw vectors  (test::projector_distance)
//   single vectors sqrt(2 (1 - (u_g . u_c)^2)): the projector distance of
//                 one column, for spectra built with distinct values
//
// Tolerances are stated per test as a multiple of eps(T) (1.2e-7 in float,
// 2.2e-16 in double), with the CPU suites' conventions: exact (0) for copies
// and single roundings; 4 (k + 2) eps relative to the norm of the terms for
// products and sums of k terms (BLAS's error bound); 10 n eps for invariants
// (residuals, orthonormality) and eigen/singular values relative to ||C||; and
// 10 n eps ||C|| / gap (the Davis-Kahan scale) for eigen- and singular vectors. Plus GPU-only checks of
// the invariants (C V = V D, orthonormality, bottom-k below the rest) and of
// the error paths.
//
// Every test case here is decorated with gpu_test::requires_gpu(): without a
// CUDA device it is skipped, and the main says so ("no CUDA device: N GPU
// tests skipped").
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "../test_util.hpp"
#include "gpu_ops.hpp"
#include "gpu_test.hpp"

using namespace loranull;
using gpu_test::requires_gpu;
using test::Mat;

namespace {

CpuBackend cpu;

template <class T>
HostMatrix<T> host(const Mat<T>& m) {
    return cpu.download(m);
}

template <class T>
Mat<T> mat(const HostMatrix<T>& h) {
    return cpu.upload(h);
}

template <class T>
HostMatrix<T> gaussian(Index rows, Index cols, std::uint64_t seed) {
    Rng rng(seed);
    return random_normal<T>(rows, cols, rng);
}

template <class T>
double eps() {
    return std::numeric_limits<T>::epsilon();
}

/// max_i |a_i - b_i| / max_i |b_i| (0 for two empty vectors).
template <class T>
double value_error(const std::vector<T>& a, const std::vector<T>& b) {
    REQUIRE(a.size() == b.size());
    double diff = 0, scale = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
        scale = std::max(scale, std::abs(double(b[i])));
    }
    return diff / std::max(scale, 1e-300);
}

/// ||G - C||_F / scale, for results whose own norm can be small by
/// cancellation (alpha A B + beta C, C + alpha X X^T): scale is the norm of the
/// terms, |alpha| ||A|| ||B|| + |beta| ||C||, as in BLAS error bounds.
template <class T1, class T2>
double scaled_error(const Mat<T1>& got, const Mat<T2>& expected, double scale) {
    return (got.template cast<double>() - expected.template cast<double>()).norm() / std::max(scale, 1e-300);
}

template <class T>
double norm(const HostMatrix<T>& h) {
    return mat(h).template cast<double>().norm();
}

/// max_i |a_i - b_i|: for values whose error scales with ||C||, not with themselves.
template <class T>
double abs_value_error(const std::vector<T>& a, const std::vector<T>& b) {
    REQUIRE(a.size() == b.size());
    double diff = 0;
    for (std::size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
    return diff;
}

/// max over columns j of the projector distance ||u1 u1^T - u2 u2^T||_F of
/// the single vectors = sqrt(2) sin(theta). Computed stably from
/// w = ||u1 - s u2|| = 2 sin(theta / 2) (s the sign of u1 . u2, both
/// normalised in double): sqrt(2 (1 - (u1 . u2)^2)) would cancel to
/// sqrt(eps) and hide everything below it.
template <class T>
double column_distance(const Mat<T>& u1, const Mat<T>& u2) {
    REQUIRE(u1.rows() == u2.rows());
    REQUIRE(u1.cols() == u2.cols());
    double worst = 0;
    for (Index j = 0; j < u1.cols(); ++j) {
        const Eigen::VectorXd a = u1.col(j).template cast<double>().normalized();
        const Eigen::VectorXd b = u2.col(j).template cast<double>().normalized();
        const double w = a.dot(b) >= 0 ? (a - b).norm() : (a + b).norm();
        worst = std::max(worst, std::sqrt(2.0) * w * std::sqrt(std::max(0.0, 1.0 - w * w / 4)));
    }
    return worst;
}

/// ||C V - V diag(values)||_F / ||C||_F in double.
template <class T>
double eigen_residual(const Mat<T>& c, const Mat<T>& v, const std::vector<T>& values) {
    Mat<double> cd = c.template cast<double>(), vd = v.template cast<double>();
    Mat<double> vdl = vd;
    for (Index j = 0; j < vd.cols(); ++j) vdl.col(j) *= double(values[static_cast<std::size_t>(j)]);
    return (cd * vd - vdl).norm() / std::max(cd.norm(), 1e-300);
}

/// Lower triangle (diagonal included) as a dense matrix.
template <class T>
Mat<T> lower(const Mat<T>& m) {
    return m.template triangularView<Eigen::Lower>();
}

template <class T>
Mat<T> strictly_upper(const Mat<T>& m) {
    return m.template triangularView<Eigen::StrictlyUpper>();
}

/// Activations with a decaying spectrum (rows scaled by decay^i, then rotated):
/// a covariance with well separated small eigenvalues, as in test_linalg.cpp.
template <class T>
HostMatrix<T> activations(Index n, Index tokens, std::uint64_t seed, double decay = 0.8) {
    Mat<double> x = test::gaussian<double>(n, tokens, seed);
    Mat<double> q = test::orthonormal<double>(n, n, seed + 1);
    for (Index i = 0; i < n; ++i) x.row(i) *= std::pow(decay, double(i));
    return host(Mat<T>((q * x).template cast<T>()));
}

/// n distinct eigenvalues 1, 2, ..., n shifted by `shift` (gap 1).
std::vector<double> spaced_spectrum(Index n, double shift = 0) {
    std::vector<double> values(static_cast<std::size_t>(n));
    for (Index i = 0; i < n; ++i) values[static_cast<std::size_t>(i)] = double(i + 1) + shift;
    return values;
}

}  // namespace

// --- storage -------------------------------------------------------------------

TEST_CASE_TEMPLATE("storage: round trip, zeros, block, set_block, transpose, select_columns, convert are exact" *
                       requires_gpu(),
                   T, float, double) {
    struct Shape {
        Index rows, cols;
    };
    for (Shape s : {Shape{1, 1}, Shape{7, 5}, Shape{33, 130}}) {
        CAPTURE(s.rows);
        CAPTURE(s.cols);
        const HostMatrix<T> h = gaussian<T>(s.rows, s.cols, 1 + s.rows);
        const Mat<T> m = mat(h);
        CHECK(gpu::round_trip(h) == h);
        CHECK(gpu::zeros<T>(s.rows, s.cols) == HostMatrix<T>(s.rows, s.cols));
        const Index r0 = s.rows / 2, c0 = s.cols / 3, rows = s.rows - r0, cols = (s.cols - c0 + 1) / 2;
        CHECK(gpu::block(h, r0, c0, rows, cols) == host(cpu.block(m, r0, c0, rows, cols)));
        CHECK(gpu::block(h, 0, 0, s.rows, 0).cols() == 0);
        const HostMatrix<T> piece = gaussian<T>(rows, cols, 99);
        Mat<T> expected = m;
        cpu.set_block(expected, r0, c0, mat(piece));
        CHECK(gpu::set_block(h, r0, c0, piece) == host(expected));
        CHECK(gpu::transpose(h) == host(cpu.transpose(m)));
        const std::vector<Index> which{s.cols - 1, 0, s.cols - 1};
        CHECK(gpu::select_columns(h, which) == host(cpu.select_columns(m, which)));
        CHECK(gpu::select_columns(h, {}).cols() == 0);
        CHECK(gpu::to_double(h) == host(cpu.convert<double>(m)));
        CHECK(gpu::to_float(h) == host(cpu.convert<float>(m)));
    }
    CHECK(gpu::round_trip(HostMatrix<T>(0, 3)).cols() == 3);
}

// --- products ------------------------------------------------------------------

TEST_CASE_TEMPLATE("gemm matches the CPU for every transpose combination and size" * requires_gpu(), T, float, double) {
    struct Shape {
        Index m, k, n;
    };
    for (Shape s : {Shape{1, 1, 1}, Shape{7, 5, 3}, Shape{33, 7, 130}, Shape{64, 65, 17}})
        for (Op op_a : {Op::none, Op::transpose})
            for (Op op_b : {Op::none, Op::transpose}) {
                CAPTURE(s.m);
                CAPTURE(s.k);
                CAPTURE(s.n);
                const HostMatrix<T> a = op_a == Op::none ? gaussian<T>(s.m, s.k, 1) : gaussian<T>(s.k, s.m, 1);
                const HostMatrix<T> b = op_b == Op::none ? gaussian<T>(s.k, s.n, 2) : gaussian<T>(s.n, s.k, 2);
                const HostMatrix<T> c = gaussian<T>(s.m, s.n, 3);
                Mat<T> expected = mat(c);
                cpu.gemm(op_a, op_b, T(0.5), mat(a), mat(b), T(-2), expected);
                const HostMatrix<T> got = gpu::gemm(op_a, op_b, T(0.5), a, b, T(-2), c);
                // Different summation orders (and FMA): BLAS's k eps bound, twice.
                const double scale = 0.5 * norm(a) * norm(b) + 2 * norm(c);
                CHECK(scaled_error(mat(got), expected, scale) < 4 * double(s.k + 2) * eps<T>());
            }
    // beta = 0 ignores the old contents, NaN included; k = 0 scales by beta.
    const HostMatrix<T> nan_c(4, 2, std::numeric_limits<T>::quiet_NaN());
    const HostMatrix<T> got = gpu::gemm(Op::none, Op::none, T(1), gaussian<T>(4, 3, 4), gaussian<T>(3, 2, 5), T(0), nan_c);
    CHECK(all_finite(got.data(), got.size()));
    const HostMatrix<T> c = gaussian<T>(7, 5, 6);
    Mat<T> expected = mat(c);
    cpu.gemm(Op::none, Op::none, T(1), Mat<T>(7, 0), Mat<T>(0, 5), T(0.5), expected);
    CHECK(gpu::gemm(Op::none, Op::none, T(1), HostMatrix<T>(7, 0), HostMatrix<T>(0, 5), T(0.5), c) == host(expected));
}

TEST_CASE_TEMPLATE("syrk_lower: lower triangle matches the CPU and the strictly upper one is untouched, symmetrize_lower exact" *
                       requires_gpu(),
                   T, float, double) {
    for (Index n : {1, 7, 130})
        for (Index k : {1, 33}) {
            CAPTURE(n);
            CAPTURE(k);
            const HostMatrix<T> x = gaussian<T>(n, k, 10 + n), c = gaussian<T>(n, n, 11);
            Mat<T> expected = mat(c);
            cpu.syrk_lower(T(0.25), mat(x), expected);
            const Mat<T> got = mat(gpu::syrk_lower(T(0.25), x, c));
            const double scale = 0.25 * norm(x) * norm(x) + norm(c);
            CHECK(scaled_error(lower(got), lower(expected), scale) < 4 * double(k + 2) * eps<T>());
            CHECK(strictly_upper(got) == strictly_upper(mat(c)));
            Mat<T> sym = got;
            cpu.symmetrize_lower(sym);
            CHECK(gpu::symmetrize_lower(host(got)) == host(sym));
        }
    // Zero tokens: nothing changes.
    const HostMatrix<T> c = gaussian<T>(3, 3, 12);
    CHECK(gpu::syrk_lower(T(1), HostMatrix<T>(3, 0), c) == c);
}

TEST_CASE("syrk_lower, mixed precision: float activations into a double accumulator" * requires_gpu()) {
    for (Index n : {1, 7, 130}) {
        CAPTURE(n);
        // 5000 tokens: more than one conversion panel when n is large.
        const Index k = n == 130 ? 5000 : 33;
        const HostMatrix<float> x = gaussian<float>(n, k, 20 + n);
        const HostMatrix<double> c = gaussian<double>(n, n, 21);
        Mat<double> expected = mat(c);
        cpu.syrk_lower(1.5, mat(x), expected);
        const Mat<double> got = mat(gpu::syrk_lower_mixed(1.5, x, c));
        const double scale = 1.5 * norm(x) * norm(x) + norm(c);
        CHECK(scaled_error(lower(got), lower(expected), scale) < 4 * double(k + 2) * eps<double>());
        CHECK(strictly_upper(got) == strictly_upper(mat(c)));
    }
}

// --- elementwise and reductions ---------------------------------------------------

TEST_CASE_TEMPLATE("elementwise work and reductions match the CPU" * requires_gpu(), T, float, double) {
    for (Index n : {1, 7, 130}) {
        CAPTURE(n);
        const HostMatrix<T> a = gaussian<T>(n, n, 30 + n), b = gaussian<T>(n, n, 31 + n);
        const Mat<T> ma = mat(a), mb = mat(b);
        Mat<T> expected = ma;
        cpu.scale(T(-1.75), expected);
        CHECK(gpu::scale(T(-1.75), a) == host(expected));  // one rounding, both sides
        expected = mb;
        cpu.axpy(T(0.3), ma, expected);
        // One rounding (FMA) or two: at most an ulp of alpha a per entry.
        CHECK(scaled_error(mat(gpu::axpy(T(0.3), a, b)), expected, 0.3 * norm(a) + norm(b)) <= 2 * eps<T>());
        std::vector<T> factors(static_cast<std::size_t>(n));
        for (Index j = 0; j < n; ++j) factors[static_cast<std::size_t>(j)] = T(0.5) + T(j);
        expected = ma;
        cpu.scale_columns(expected, factors);
        CHECK(gpu::scale_columns(a, factors) == host(expected));
        expected = ma;
        cpu.scale_rows(expected, factors);
        CHECK(gpu::scale_rows(a, factors) == host(expected));
        expected = ma;
        cpu.add_to_diagonal(expected, T(3));
        CHECK(gpu::add_to_diagonal(a, T(3)) == host(expected));
        CHECK(std::abs(double(gpu::trace(a)) - double(cpu.trace(ma))) <=
              4 * n * eps<T>() * std::max(1.0, double(ma.diagonal().cwiseAbs().sum())));
        CHECK(gpu::max_coeff(a) == cpu.max_coeff(ma));
        CHECK(std::abs(double(gpu::frobenius_norm(a)) - double(cpu.frobenius_norm(ma))) <=
              4 * n * eps<T>() * double(cpu.frobenius_norm(ma)));
        CHECK(gpu::all_finite(a));
    }
    // A wide, non-square matrix: add_to_diagonal on min(rows, cols) entries.
    const HostMatrix<T> wide = gaussian<T>(3, 8, 33);
    Mat<T> expected = mat(wide);
    cpu.add_to_diagonal(expected, T(-1));
    CHECK(gpu::add_to_diagonal(wide, T(-1)) == host(expected));
    // all_finite sees NaN and +-Inf anywhere; an empty matrix is finite.
    for (T bad : {std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity(),
                  -std::numeric_limits<T>::infinity()})
        for (Index at : {Index(0), Index(17), Index(7 * 9 - 1)}) {
            HostMatrix<T> m = gaussian<T>(7, 9, 34);
            m.data()[at] = bad;
            CHECK_FALSE(gpu::all_finite(m));
        }
    CHECK(gpu::all_finite(HostMatrix<T>(0, 4)));
    // max_coeff is the signed maximum.
    HostMatrix<T> negative(4, 4, T(-3));
    negative(2, 1) = T(-0.5);
    CHECK(gpu::max_coeff(negative) == T(-0.5));
}

// --- decompositions (the primitives) ---------------------------------------------

TEST_CASE_TEMPLATE("symmetric_eigen matches the CPU: values, vectors, C V = V D, orthonormal" * requires_gpu(), T,
                   float, double) {
    for (Index n : {1, 2, 7, 33, 130}) {
        CAPTURE(n);
        // Indefinite, distinct values with gap 1: every eigenvector is defined.
        const Mat<T> c = test::symmetric_with_spectrum<T>(spaced_spectrum(n, -double(n) / 3), 40 + n);
        const auto expected = cpu.symmetric_eigen(c);
        const auto got = gpu::symmetric_eigen(host(c));
        REQUIRE(got.values.size() == std::size_t(n));
        CHECK(std::is_sorted(got.values.begin(), got.values.end()));
        const double norm = double(n);  // ||C||_2 <= n, gap 1
        const double unit = 10 * double(n) * eps<T>();
        CHECK(abs_value_error(got.values, expected.values) < unit * norm);
        CHECK(column_distance(mat(got.vectors), expected.vectors) < unit * norm);  // / gap = 1
        CHECK(eigen_residual(c, mat(got.vectors), got.values) < unit);
        CHECK(test::orthonormality_error(mat(got.vectors)) < unit);
    }
}

TEST_CASE_TEMPLATE("symmetric_eigen_range matches the CPU for any index range" * requires_gpu(), T, float, double) {
    for (Index n : {1, 7, 33, 130}) {
        const Mat<T> c = test::symmetric_with_spectrum<T>(spaced_spectrum(n), 50 + n);
        struct Range {
            Index first, count;
        };
        for (Range r : {Range{0, 1}, Range{0, std::min<Index>(5, n)}, Range{n - 1, 1}, Range{n / 3, n / 2},
                        Range{0, n}, Range{n / 2, 0}}) {
            CAPTURE(n);
            CAPTURE(r.first);
            CAPTURE(r.count);
            const auto expected = cpu.symmetric_eigen_range(c, r.first, r.count);
            const auto got = gpu::symmetric_eigen_range(host(c), r.first, r.count);
            REQUIRE(got.values.size() == std::size_t(r.count));
            REQUIRE(got.vectors.rows() == n);
            REQUIRE(got.vectors.cols() == r.count);
            if (r.count == 0) continue;
            const double norm = double(n);
            const double unit = 10 * double(n) * eps<T>();
            CHECK(abs_value_error(got.values, expected.values) < unit * norm);
            CHECK(test::projector_distance(mat(got.vectors), expected.vectors) < 2 * unit * norm);  // / gap = 1
            CHECK(eigen_residual(c, mat(got.vectors), got.values) < unit);
        }
    }
}

TEST_CASE_TEMPLATE("thin_svd matches the CPU on tall, wide and square matrices" * requires_gpu(), T, float, double) {
    struct Shape {
        Index m, n;
    };
    for (Shape s : {Shape{1, 1}, Shape{1, 7}, Shape{7, 1}, Shape{33, 7}, Shape{7, 33}, Shape{40, 40}, Shape{130, 33}}) {
        CAPTURE(s.m);
        CAPTURE(s.n);
        const Index p = std::min(s.m, s.n);
        std::vector<double> sv = spaced_spectrum(p);
        std::reverse(sv.begin(), sv.end());  // p, p-1, ..., 1: distinct, gap 1
        const Mat<T> a = test::matrix_with_singular_values<T>(s.m, s.n, sv, 60 + s.m + s.n);
        const auto expected = cpu.thin_svd(a);
        const auto got = gpu::thin_svd(host(a));
        REQUIRE(got.U.rows() == s.m);
        REQUIRE(got.U.cols() == p);
        REQUIRE(got.V.rows() == s.n);
        REQUIRE(got.V.cols() == p);
        REQUIRE(got.singular_values.size() == std::size_t(p));
        CHECK(std::is_sorted(got.singular_values.rbegin(), got.singular_values.rend()));
        CHECK(got.singular_values.back() >= T(0));
        const double norm = double(p), tol = 10 * double(s.m + s.n) * eps<T>();
        CHECK(value_error(got.singular_values, expected.singular_values) < tol);  // relative to sigma_1
        CHECK(column_distance(mat(got.U), expected.U) < tol * norm);
        CHECK(column_distance(mat(got.V), expected.V) < tol * norm);
        const Mat<double> u = mat(got.U).template cast<double>(), v = mat(got.V).template cast<double>();
        const Mat<double> s_diag = test::vec(got.singular_values).template cast<double>().asDiagonal();
        CHECK(test::relative_error(Mat<double>(u * s_diag * v.transpose()), a) < tol);
        CHECK(test::orthonormality_error(mat(got.U)) < tol);
        CHECK(test::orthonormality_error(mat(got.V)) < tol);
    }
}

TEST_CASE_TEMPLATE("thin_q: an orthonormal basis of the same column space as the CPU's" * requires_gpu(), T, float,
                   double) {
    struct Shape {
        Index m, n;
    };
    for (Shape s : {Shape{1, 1}, Shape{7, 3}, Shape{3, 7}, Shape{33, 33}, Shape{130, 17}}) {
        CAPTURE(s.m);
        CAPTURE(s.n);
        const HostMatrix<T> a = gaussian<T>(s.m, s.n, 70 + s.m);
        const Mat<T> expected = cpu.thin_q(mat(a));
        const Mat<T> got = mat(gpu::thin_q(a));
        REQUIRE(got.rows() == s.m);
        REQUIRE(got.cols() == std::min(s.m, s.n));
        const double tol = 10 * double(s.m + s.n) * eps<T>();
        CHECK(test::orthonormality_error(got) < tol);
        // Gaussian matrices are well conditioned at these sizes (cond < 10).
        CHECK(test::projector_distance(got, expected) < 10 * tol);
    }
}

// --- the covariance accumulator ------------------------------------------------------

TEST_CASE_TEMPLATE("Covariance add, add_samples, merge and the reference normalisation match the CPU" * requires_gpu(),
                   T, float, double) {
    for (Index n : {1, 7, 33}) {
        CAPTURE(n);
        std::vector<HostMatrix<float>> batches, others;
        for (int b = 0; b < 4; ++b) batches.push_back(gaussian<float>(n, 25 + b, 80 + n + b));
        for (int b = 0; b < 2; ++b) others.push_back(gaussian<float>(n, 30, 90 + n + b));
        const double tol = 4 * (185 + 2) * eps<T>();  // sums of at most 185 tokens
        for (bool reference : {false, true}) {
            CAPTURE(reference);
            Covariance<CpuBackend, T> cov(cpu, n, reference ? Normalisation::reference : Normalisation::plain, "parity");
            for (const auto& x : batches) cov.add(mat(x));
            const auto got = gpu::covariance<T, float>(n, batches, {reference, 0});
            CHECK(test::relative_error(mat(got.matrix), cov.matrix()) < tol);
            CHECK(test::relative_error(lower(mat(got.raw_sum_lower)), lower(cov.raw_sum_lower())) < tol);
            CHECK(got.tokens == cov.tokens());
            CHECK(got.samples == cov.samples());
            CHECK(got.data_id == cov.data_id());
        }
        // add_samples: the batches side by side, 25 tokens per sample.
        HostMatrix<float> joined(n, 100);
        for (Index j = 0; j < 100; ++j)
            for (Index i = 0; i < n; ++i) joined(i, j) = gaussian<float>(n, 100, 95)(i, j);
        for (bool reference : {false, true}) {
            Covariance<CpuBackend, T> cov(cpu, n, reference ? Normalisation::reference : Normalisation::plain, "parity");
            cov.add_samples(mat(joined), 25);
            const auto got = gpu::covariance<T, float>(n, {joined}, {reference, 25});
            CHECK(test::relative_error(mat(got.matrix), cov.matrix()) < tol);
            CHECK(got.samples == 4);
        }
        // merge: the union of two accumulators.
        Covariance<CpuBackend, T> a(cpu, n, Normalisation::plain, "a"), b(cpu, n, Normalisation::plain, "b");
        for (const auto& x : batches) a.add(mat(x));
        for (const auto& x : others) b.add(mat(x));
        a.merge(b);
        const auto merged = gpu::covariance_merged<T>(n, batches, others);
        CHECK(test::relative_error(mat(merged.matrix), a.matrix()) < tol);
        CHECK(merged.tokens == a.tokens());
        CHECK(merged.data_id == "a+b");
        // Double activations (into T = float: the other mixed direction).
        std::vector<HostMatrix<double>> doubles{gaussian<double>(n, 40, 97)};
        Covariance<CpuBackend, T> cd(cpu, n);
        cd.add(mat(doubles[0]));
        CHECK(test::relative_error(mat(gpu::covariance<T, double>(n, doubles).matrix), cd.matrix()) < tol);
    }
}

TEST_CASE("tensor-core covariance (bf16 and fp16 in, fp32 accumulation) matches the CPU on the rounded inputs" *
          requires_gpu()) {
    struct Case {
        Index n, tokens, block;
        bool bf16;
    };
    for (Case c : {Case{1, 7, 1024, true}, Case{7, 64, 1024, true}, Case{130, 64, 1024, false},
                   Case{130, 64, 32, true}, Case{1100, 48, 1024, true}}) {
        CAPTURE(c.n);
        CAPTURE(c.block);
        CAPTURE(c.bf16);
        const HostMatrix<float> x = gaussian<float>(c.n, c.tokens, 100 + c.n);
        const auto got = gpu::covariance_low_precision(x, c.bf16, c.block);
        // The conversion rounds to nearest: 8 (bf16) or 11 (fp16) significant bits.
        const double unit = c.bf16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
        // (Plus half of fp16's subnormal spacing 2^-24 for the tiny entries.)
        double worst = 0;  // largest rounding error relative to its bound
        for (Index k = 0; k < x.size(); ++k)
            worst = std::max(worst, std::abs(double(got.rounded.data()[k]) - double(x.data()[k])) /
                                        (unit * std::abs(double(x.data()[k])) + std::ldexp(1.0, -25)));
        CHECK(worst <= 1.0);
        // Reference: the covariance of the rounded values, in double.
        const Mat<double> r = mat(got.rounded).cast<double>();
        const Mat<double> expected = r * r.transpose() / double(c.tokens);
        // Products of 16-bit values are exact in fp32; the sum rounds in fp32.
        CHECK(test::relative_error(mat(got.matrix), expected) < 4 * double(c.tokens + 2) * eps<float>());
    }
}

// --- the linalg algorithms ---------------------------------------------------------------

TEST_CASE_TEMPLATE("smallest_eigenpairs and largest_eigenpairs match the CPU" * requires_gpu(), T, float, double) {
    for (Index n : {1, 7, 33, 130})
        for (bool indefinite : {false, true}) {
            // Indefinite: values k + 0.25 - n/3, so |lambda| are distinct and the
            // |lambda| order differs from the algebraic one.
            const double shift = indefinite ? 0.25 - std::floor(double(n) / 3) : 0.0;
            const Mat<T> c = test::symmetric_with_spectrum<T>(spaced_spectrum(n, shift), 110 + n);
            const double norm = double(n), tol = 10 * double(n) * eps<T>() * norm;  // gap 1
            for (Index k : {Index(1), std::min<Index>(3, n), n}) {
                CAPTURE(n);
                CAPTURE(indefinite);
                CAPTURE(k);
                const auto small = smallest_eigenpairs(cpu, c, k);
                const auto got_small = gpu::smallest_eigenpairs(host(c), k);
                CHECK(abs_value_error(got_small.values, small.values) < tol);
                CHECK(column_distance(mat(got_small.vectors), small.vectors) < tol);
                const auto large = largest_eigenpairs(cpu, c, k);
                const auto got_large = gpu::largest_eigenpairs(host(c), k);
                CHECK(abs_value_error(got_large.values, large.values) < tol);
                CHECK(column_distance(mat(got_large.vectors), large.vectors) < tol);
            }
            const auto all = gpu::symmetric_eigen_algorithm(host(c));
            CHECK(abs_value_error(all.values, symmetric_eigen(cpu, c).values) < tol);
        }
}

TEST_CASE_TEMPLATE("thin_svd, truncated_svd and randomized_svd (same seed) match the CPU" * requires_gpu(), T, float,
                   double) {
    struct Shape {
        Index m, n, k;
    };
    for (Shape s : {Shape{1, 1, 1}, Shape{9, 30, 3}, Shape{60, 40, 5}, Shape{130, 33, 8}}) {
        CAPTURE(s.m);
        CAPTURE(s.n);
        CAPTURE(s.k);
        const Index p = std::min(s.m, s.n);
        // Decaying singular values 0.9^i: distinct, relative gaps of 10%.
        std::vector<double> sv(static_cast<std::size_t>(p));
        for (Index i = 0; i < p; ++i) sv[static_cast<std::size_t>(i)] = std::pow(0.9, double(i));
        const Mat<T> a = test::matrix_with_singular_values<T>(s.m, s.n, sv, 120 + s.m);
        const double unit = 10 * double(s.m + s.n) * eps<T>();  // ||A||_2 = 1
        // The gap that separates the kept triplets from the others (none when k = p).
        const auto gap_after = [&](Index kept_first, Index kept_count) {
            double gap = 1.0;
            if (kept_first > 0) gap = std::min(gap, sv[std::size_t(kept_first - 1)] - sv[std::size_t(kept_first)]);
            if (kept_first + kept_count < p)
                gap = std::min(gap, sv[std::size_t(kept_first + kept_count - 1)] - sv[std::size_t(kept_first + kept_count)]);
            return gap;
        };
        CHECK(abs_value_error(gpu::thin_svd_algorithm(host(a)).singular_values, thin_svd(cpu, a).singular_values) < unit);
        for (bool largest : {true, false}) {
            CAPTURE(largest);
            const auto expected = truncated_svd(cpu, a, s.k, largest ? Triplets::largest : Triplets::smallest);
            const auto got = gpu::truncated_svd(host(a), s.k, largest);
            const double tol = unit / gap_after(largest ? 0 : p - s.k, s.k);
            CHECK(abs_value_error(got.singular_values, expected.singular_values) < unit);
            CHECK(test::projector_distance(mat(got.U), expected.U) < tol);
            CHECK(test::projector_distance(mat(got.V), expected.V) < tol);
        }
        // Same seed, same Gaussian test matrix (drawn on the host): the two runs
        // differ by rounding only, amplified by the conditioning of the range
        // finder (1 / the relative gap after k).
        RandomizedSvdOptions options;
        options.oversampling = 4;
        options.power_iterations = 2;
        options.seed = 5;
        const auto expected = randomized_svd(cpu, a, s.k, options);
        const auto got = gpu::randomized_svd(host(a), s.k, 4, 2, 5);
        const double tol = 4 * unit / gap_after(0, s.k);
        CHECK(abs_value_error(got.singular_values, expected.singular_values) < tol);
        CHECK(test::projector_distance(mat(got.U), expected.U) < tol);
        CHECK(test::projector_distance(mat(got.V), expected.V) < tol);
    }
}

TEST_CASE_TEMPLATE("null_space matches the CPU: basis, eigenvalues, energy, rank report, project(W)" * requires_gpu(), T,
                   float, double) {
    for (Index n : {7, 33}) {
        // Rows scaled by 0.9^i: eigenvalues ~0.81^i, the smallest ~1e-3 of the
        // largest at n = 33, resolved in float too; relative gaps ~20%.
        Covariance<CpuBackend, T> cov(cpu, n);
        cov.add(mat(activations<float>(n, 400, 130 + n, 0.9)));
        const Mat<T> c = cov.matrix();
        const auto all = cpu.symmetric_eigen(c);
        const double norm = double(all.values.back());  // ||C||_2
        const double unit = 10 * double(n) * eps<T>() * norm;
        const HostMatrix<T> w = gaussian<T>(9, n, 131);
        for (Index r : {Index(1), Index(4), n}) {
            CAPTURE(n);
            CAPTURE(r);
            const auto expected = null_space(cpu, c, r);
            const auto got = gpu::null_space(host(c), r, w);
            REQUIRE(got.basis.rows() == n);
            REQUIRE(got.basis.cols() == r);
            CHECK(abs_value_error(got.eigenvalues, expected.eigenvalues) < unit);
            CHECK(std::abs(double(got.trace) - double(expected.trace)) < unit);
            CHECK(std::abs(got.energy_fraction - expected.energy_fraction()) < double(r) * unit / double(expected.trace));
            CHECK(got.deficient == expected.rank_report.deficient);
            CHECK_FALSE(got.deficient);
            CHECK(got.zero_eigenvalues_seen == expected.rank_report.zero_eigenvalues_seen);
            CHECK(test::orthonormality_error(mat(got.basis)) < 10 * double(n) * eps<T>());
            const double gap = r < n ? double(all.values[std::size_t(r)] - all.values[std::size_t(r - 1)]) : norm;
            const double subspace_tol = unit / gap;
            CHECK(test::projector_distance(mat(got.basis), expected.basis) < subspace_tol);
            // ||W (P1 - P2)||_F <= ||W||_2 ||P1 - P2||_F, relative to ||W P||_F ~ ||W||_F sqrt(r / n).
            const Mat<T> projected = expected.project(cpu, mat(w));
            CHECK(test::relative_error(mat(got.projected), projected) <
                  4 * (subspace_tol + unit / norm) * std::sqrt(double(n) / double(r)));
        }
    }
    // Too few tokens: both backends flag the same rank deficiency.
    const HostMatrix<float> few = gaussian<float>(16, 8, 140);
    const auto got = gpu::null_space_of_activations<T>(few, 2);
    Covariance<CpuBackend, T> cov(cpu, 16);
    cov.add(mat(few));
    const auto expected = null_space(cov, 2);
    CHECK(got.deficient);
    CHECK(got.deficient == expected.rank_report.deficient);
    CHECK(got.structural_zeros == expected.rank_report.structural_zeros);
}

// --- GPU-only invariants -----------------------------------------------------------------

TEST_CASE_TEMPLATE("GPU invariants: C V = V D, orthonormal bases, the bottom k below every other eigenvalue" *
                       requires_gpu(),
                   T, float, double) {
    const Index n = 130, k = 8;
    // Rows scaled by 0.97^i: eigenvalues from 1 down to ~4e-4, resolved in float.
    Covariance<CpuBackend, T> cov(cpu, n);
    cov.add(mat(activations<float>(n, 300, 150, 0.97)));
    const Mat<T> c = cov.matrix();
    const auto all = gpu::symmetric_eigen(host(c));
    const auto bottom = gpu::smallest_eigenpairs(host(c), k);
    const double tol = 10 * double(n) * eps<T>();
    CHECK(eigen_residual(c, mat(all.vectors), all.values) < tol);
    CHECK(eigen_residual(c, mat(bottom.vectors), bottom.values) < tol);
    CHECK(test::orthonormality_error(mat(all.vectors)) < tol);
    CHECK(test::orthonormality_error(mat(bottom.vectors)) < tol);
    // Ascending |lambda|, and the bottom k are the k smallest |lambda| of the
    // full decomposition: each at most the (k+1)-th smallest.
    for (std::size_t j = 1; j < bottom.values.size(); ++j)
        CHECK(std::abs(bottom.values[j - 1]) <= std::abs(bottom.values[j]));
    std::vector<double> magnitudes;
    for (T v : all.values) magnitudes.push_back(std::abs(double(v)));
    std::sort(magnitudes.begin(), magnitudes.end());
    const double slack = tol * magnitudes.back();
    for (std::size_t j = 0; j < std::size_t(k); ++j)
        CHECK(std::abs(std::abs(double(bottom.values[j])) - magnitudes[j]) <= slack);
    CHECK(std::abs(double(bottom.values.back())) <= magnitudes[std::size_t(k)] + slack);
    // The SVD reconstructs its input; Q is orthonormal.
    const HostMatrix<T> a = gaussian<T>(45, 130, 151);
    const auto svd = gpu::thin_svd(a);
    const Mat<double> s_diag = test::vec(svd.singular_values).template cast<double>().asDiagonal();
    CHECK(test::relative_error(Mat<double>(mat(svd.U).template cast<double>() * s_diag *
                                           mat(svd.V).template cast<double>().transpose()),
                               mat(a)) < 10 * (45 + 130) * eps<T>());
    CHECK(test::orthonormality_error(mat(gpu::thin_q(a))) < 10 * 45 * eps<T>());
}

// --- error paths ------------------------------------------------------------------------------

TEST_CASE("GPU error paths throw loranull::error naming the function and the shapes" * requires_gpu()) {
    using gpu::ErrorCase;
    struct Expect {
        ErrorCase which;
        std::vector<std::string> parts;
    };
    const std::vector<Expect> cases{
        {ErrorCase::gemm_shape, {"loranull::CudaBackend::gemm", "out is 5 x 2"}},
        {ErrorCase::gemm_alias, {"CudaBackend::gemm", "alias"}},
        {ErrorCase::syrk_shape, {"CudaBackend::syrk_lower", "X is 4 x 2", "out is 3 x 3"}},
        {ErrorCase::block_out_of_range, {"CudaBackend::block", "7 x 5"}},
        {ErrorCase::set_block_out_of_range, {"CudaBackend::set_block", "3 x 1", "4 x 4"}},
        {ErrorCase::select_columns_out_of_range, {"CudaBackend::select_columns", "column 5", "7 x 5"}},
        {ErrorCase::eigen_range_out_of_range, {"CudaBackend::symmetric_eigen_range", "4 x 4"}},
        {ErrorCase::eigen_not_square, {"CudaBackend::symmetric_eigen", "4 x 3", "square"}},
        {ErrorCase::scale_columns_count, {"CudaBackend::scale_columns", "2 factors", "4 x 3"}},
        {ErrorCase::scale_rows_count, {"CudaBackend::scale_rows", "3 factors", "4 x 3"}},
        {ErrorCase::trace_not_square, {"CudaBackend::trace", "4 x 3"}},
        {ErrorCase::max_coeff_empty, {"CudaBackend::max_coeff", "empty"}},
        {ErrorCase::covariance_wrong_rows, {"Covariance::add", "5 rows", "expected 4"}},
        {ErrorCase::covariance_nan, {"Covariance::add", "NaN"}},
        {ErrorCase::smallest_eigenpairs_bad_k, {"smallest_eigenpairs", "k = 5"}},
        {ErrorCase::randomized_svd_bad_k, {"randomized_svd", "rank k = 5"}},
        {ErrorCase::null_space_bad_rank, {"null_space", "rank r = 0"}},
        {ErrorCase::null_space_deficient_throws, {"null_space", "rank-deficient"}},
        {ErrorCase::bad_device, {"CudaBackend::CudaBackend", "requested"}},
    };
    for (const auto& c : cases) {
        const std::string message = gpu::error_message(c.which);
        CAPTURE(message);
        CHECK_FALSE(message.empty());
        for (const auto& part : c.parts) CHECK(message.find(part) != std::string::npos);
    }
}

TEST_CASE("DeviceMatrix: deep copies, moves, copy-assignment, stream ordering" * requires_gpu()) {
    CHECK(gpu::device_matrix_semantics() == "");
}
