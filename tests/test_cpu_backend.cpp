// The CPU backend's primitives against their plain references (cpu/reference.hpp)
// and against the invariants that define them, in float and double, at sizes
// that are not multiples of any block size (1, 7, 33, 130).
#include <doctest/doctest.h>

#include "test_util.hpp"

using namespace loranull;
using test::Mat;

namespace {
CpuBackend cpu;
}

TEST_CASE_TEMPLATE("upload/download round-trip exactly, block, select_columns, convert", T, float, double) {
    Rng rng(1);
    HostMatrix<T> h = random_normal<T>(7, 5, rng);
    Mat<T> m = cpu.upload(h);
    CHECK(m(3, 2) == h(3, 2));
    CHECK(cpu.download(m) == h);
    Mat<T> b = cpu.block(m, 1, 2, 4, 3);
    CHECK(b.rows() == 4);
    CHECK(b(0, 0) == m(1, 2));
    CHECK(b(3, 2) == m(4, 4));
    Mat<T> s = cpu.select_columns(m, {4, 0, 4});
    CHECK(s.col(0) == m.col(4));
    CHECK(s.col(1) == m.col(0));
    CHECK(s.col(2) == m.col(4));
    CHECK(cpu.convert<double>(m)(6, 4) == static_cast<double>(m(6, 4)));
    Mat<T> target = Mat<T>::Zero(9, 9);
    cpu.set_block(target, 2, 3, b);
    CHECK(Mat<T>(target.block(2, 3, 4, 3)) == b);
    CHECK(target.sum() == doctest::Approx(b.sum()));
    CHECK_THROWS_AS(cpu.set_block(target, 6, 0, b), loranull::error);
    CHECK(cpu.transpose(m) == Mat<T>(m.transpose()));
    CHECK_THROWS_AS(cpu.block(m, 5, 0, 3, 1), loranull::error);
    CHECK_THROWS_AS(cpu.select_columns(m, {5}), loranull::error);
    CHECK_THROWS_AS(cpu.zeros<T>(-1, 3), loranull::error);
}

TEST_CASE_TEMPLATE("gemm matches the naive triple loop for every transpose combination", T, float, double) {
    const Index m = 33, k = 7, n = 130;
    for (Op op_a : {Op::none, Op::transpose})
        for (Op op_b : {Op::none, Op::transpose}) {
            Mat<T> a = op_a == Op::none ? test::gaussian<T>(m, k, 1) : test::gaussian<T>(k, m, 1);
            Mat<T> b = op_b == Op::none ? test::gaussian<T>(k, n, 2) : test::gaussian<T>(n, k, 2);
            Mat<T> c = test::gaussian<T>(m, n, 3), expected = c;
            cpu.gemm(op_a, op_b, T(0.5), a, b, T(-2), c);
            cpu_reference::gemm_naive(op_a, op_b, T(0.5), a, b, T(-2), expected);
            CHECK(test::relative_error(c, expected) < 20 * test::eps<T>());
        }
    // beta = 0 ignores the old contents, NaN included.
    Mat<T> a = test::gaussian<T>(4, 3, 4), b = test::gaussian<T>(3, 2, 5);
    Mat<T> c = Mat<T>::Constant(4, 2, std::numeric_limits<T>::quiet_NaN());
    cpu.gemm(Op::none, Op::none, T(1), a, b, T(0), c);
    CHECK(c.allFinite());
    // Shape mismatch and aliasing throw, naming the shapes.
    Mat<T> wrong(5, 2);
    const std::string message = test::error_message([&] { cpu.gemm(Op::none, Op::none, T(1), a, b, T(0), wrong); });
    CHECK(message.find("CpuBackend::gemm") != std::string::npos);
    CHECK(message.find("out is 5 x 2") != std::string::npos);
    Mat<T> sq = test::gaussian<T>(3, 3, 6);
    CHECK_THROWS_AS(cpu.gemm(Op::none, Op::none, T(1), sq, sq, T(0), sq), loranull::error);
    // Empty operands have no storage to alias (both data pointers are null).
    Mat<T> empty_a(0, 3), empty_out(0, 2), b32 = test::gaussian<T>(3, 2, 7);
    CHECK_NOTHROW(cpu.gemm(Op::none, Op::none, T(1), empty_a, b32, T(0), empty_out));
}

TEST_CASE_TEMPLATE("syrk_lower updates the lower triangle only, as alpha X X^T", T, float, double) {
    for (Index n : {1, 7, 130}) {
        Mat<T> x = test::gaussian<T>(n, 33, 10);
        Mat<T> c = test::gaussian<T>(n, n, 11), reference = c;
        const Mat<T> before = c;
        cpu.syrk_lower(T(0.25), x, c);
        cpu_reference::syrk_lower(T(0.25), x, reference);
        Mat<T> lower = c.template triangularView<Eigen::Lower>();
        Mat<T> lower_ref = reference.template triangularView<Eigen::Lower>();
        CHECK(test::relative_error(lower, lower_ref) < 50 * test::eps<T>());
        Mat<T> upper = c.template triangularView<Eigen::StrictlyUpper>();
        Mat<T> upper_before = before.template triangularView<Eigen::StrictlyUpper>();
        CHECK(upper == upper_before);
        cpu.symmetrize_lower(c);
        CHECK(c == c.transpose());
    }
    // Zero tokens: nothing changes.
    Mat<T> c = Mat<T>::Zero(3, 3);
    cpu.syrk_lower(T(1), Mat<T>(3, 0), c);
    CHECK(c.isZero());
    CHECK_THROWS_AS(cpu.syrk_lower(T(1), Mat<T>(4, 2), c), loranull::error);
}

TEST_CASE("syrk_lower: float activations into a double accumulator") {
    Mat<float> x = test::gaussian<float>(20, 1100, 3);  // three conversion panels (512, 512, 76)
    Mat<double> c = Mat<double>::Zero(20, 20);
    cpu.syrk_lower(1.0, x, c);
    Mat<double> xd = x.cast<double>();
    Mat<double> expected = xd * xd.transpose();
    Mat<double> lower = c.triangularView<Eigen::Lower>();
    Mat<double> lower_expected = expected.triangularView<Eigen::Lower>();
    CHECK(test::relative_error(lower, lower_expected) < 1e-14);
}

TEST_CASE("add_lower adds the lower triangle only, converted, and sum_of_squares accumulates in double") {
    for (Index n : {1, 7, 130}) {
        const Mat<float> panel = test::gaussian<float>(n, n, 40);
        Mat<double> sum = test::gaussian<double>(n, n, 41);
        const Mat<double> before = sum;
        cpu.add_lower(panel, sum);
        Mat<double> expected = before;
        for (Index j = 0; j < n; ++j)
            for (Index i = j; i < n; ++i) expected(i, j) += double(panel(i, j));
        CHECK(sum == expected);  // exact: one double addition of a widened float per entry
    }
    Mat<double> sum(3, 3);
    CHECK_THROWS_AS(cpu.add_lower(Mat<float>(3, 2), sum), loranull::error);
    // 2^24 + 1 ones: a float running sum stops at 2^24, the double one does not.
    const Mat<float> ones = Mat<float>::Ones(4097, 4097);
    CHECK(cpu.sum_of_squares(ones) == 4097.0 * 4097.0);
    const Mat<float> x = test::gaussian<float>(33, 130, 42);
    CHECK(cpu.sum_of_squares(x) == doctest::Approx(x.cast<double>().squaredNorm()).epsilon(1e-6));
    CHECK(cpu.sum_of_squares(Mat<float>(0, 4)) == 0.0);
}

TEST_CASE("uninitialized gives the shape, and product() overwrites it whatever it held") {
    const Mat<double> u = cpu.uninitialized<double>(3, 4);
    CHECK(u.rows() == 3);
    CHECK(u.cols() == 4);
    CHECK_THROWS_AS(cpu.uninitialized<double>(-1, 2), loranull::error);
    const Mat<double> a = test::gaussian<double>(5, 3, 43), b = test::gaussian<double>(3, 6, 44);
    CHECK(test::relative_error(product(cpu, a, b), Mat<double>(a * b)) < 1e-15);
}

TEST_CASE_TEMPLATE("symmetric_eigen: A V = V D, orthonormal V, ascending values, agrees with Eigen", T, float, double) {
    for (Index n : {1, 7, 33, 130}) {
        std::vector<double> spectrum(static_cast<std::size_t>(n));
        for (Index i = 0; i < n; ++i) spectrum[static_cast<std::size_t>(i)] = std::pow(0.8, double(i)) - 0.1;
        Mat<T> a = test::symmetric_with_spectrum<T>(spectrum, 100 + n);
        auto pairs = cpu.symmetric_eigen(a);
        REQUIRE(static_cast<Index>(pairs.values.size()) == n);
        Mat<T> d = Eigen::Map<Eigen::Vector<T, Eigen::Dynamic>>(pairs.values.data(), n).asDiagonal();
        CHECK((a * pairs.vectors - pairs.vectors * d).norm() / a.norm() < 10 * n * test::eps<T>());
        CHECK(test::orthonormality_error(pairs.vectors) < 10 * n * test::eps<T>());
        CHECK(std::is_sorted(pairs.values.begin(), pairs.values.end()));
        auto oracle = cpu_reference::symmetric_eigen<T>(a);
        for (Index i = 0; i < n; ++i)
            CHECK(std::abs(pairs.values[i] - oracle.values[i]) < 10 * n * test::eps<T>());
    }
}

TEST_CASE_TEMPLATE("symmetric_eigen_range returns exactly pairs first .. first + count - 1", T, float, double) {
    const Index n = 130;
    std::vector<double> spectrum(n);
    for (Index i = 0; i < n; ++i) spectrum[i] = double(i) - 20.0;  // distinct, indefinite
    Mat<T> a = test::symmetric_with_spectrum<T>(spectrum, 7);
    auto all = cpu.symmetric_eigen(a);
    for (auto [first, count] : {std::pair<Index, Index>{0, 1}, {0, 9}, {50, 31}, {129, 1}, {0, 130}}) {
        auto part = cpu.symmetric_eigen_range(a, first, count);
        REQUIRE(static_cast<Index>(part.values.size()) == count);
        REQUIRE(part.vectors.cols() == count);
        // Eigenvalue errors scale with ||A||_2 = 109 (Weyl), not with |lambda|.
        for (Index i = 0; i < count; ++i)
            CHECK(std::abs(part.values[i] - all.values[first + i]) < 10 * n * test::eps<T>() * 109);
        CHECK(test::projector_distance(part.vectors, Mat<T>(all.vectors.middleCols(first, count))) <
              100 * n * test::eps<T>());
    }
    CHECK(cpu.symmetric_eigen_range(a, 5, 0).vectors.cols() == 0);
    CHECK_THROWS_AS(cpu.symmetric_eigen_range(a, 120, 11), loranull::error);
    CHECK_THROWS_AS(cpu.symmetric_eigen(Mat<T>(3, 4)), loranull::error);
}

TEST_CASE_TEMPLATE("thin_svd: A = U S V^T, orthonormal factors, descending values, agrees with Eigen", T, float, double) {
    for (auto [m, n] : {std::pair<Index, Index>{1, 1}, {33, 7}, {7, 33}, {130, 130}}) {
        Mat<T> a = test::gaussian<T>(m, n, 17 + m);
        auto svd = cpu.thin_svd(a);
        const Index p = std::min(m, n);
        REQUIRE(svd.U.rows() == m);
        REQUIRE(svd.U.cols() == p);
        REQUIRE(svd.V.rows() == n);
        REQUIRE(svd.V.cols() == p);
        Mat<T> s = Eigen::Map<Eigen::Vector<T, Eigen::Dynamic>>(svd.singular_values.data(), p).asDiagonal();
        CHECK(test::relative_error(Mat<T>(svd.U * s * svd.V.transpose()), a) < 10 * (m + n) * test::eps<T>());
        CHECK(test::orthonormality_error(svd.U) < 10 * (m + n) * test::eps<T>());
        CHECK(test::orthonormality_error(svd.V) < 10 * (m + n) * test::eps<T>());
        CHECK(std::is_sorted(svd.singular_values.rbegin(), svd.singular_values.rend()));
        auto oracle = cpu_reference::thin_svd<T>(a);
        for (Index i = 0; i < p; ++i)
            CHECK(std::abs(svd.singular_values[i] - oracle.singular_values[i]) <
                  10 * (m + n) * test::eps<T>() * oracle.singular_values[0]);
    }
}

TEST_CASE_TEMPLATE("thin_q spans the columns of A with orthonormal columns", T, float, double) {
    for (auto [m, n] : {std::pair<Index, Index>{1, 1}, {130, 7}, {7, 33}}) {
        Mat<T> a = test::gaussian<T>(m, n, 23 + n);
        Mat<T> q = cpu.thin_q(a);
        REQUIRE(q.rows() == m);
        REQUIRE(q.cols() == std::min(m, n));
        CHECK(test::orthonormality_error(q) < 10 * m * test::eps<T>());
        if (m >= n)  // Q Q^T A = A: A's columns lie in span(Q)
            CHECK(test::relative_error(Mat<T>(q * (q.transpose() * a)), a) < 10 * m * test::eps<T>());
        CHECK(test::projector_distance(q, cpu_reference::thin_q<T>(a)) < 100 * m * test::eps<T>());
    }
}

TEST_CASE_TEMPLATE("elementwise primitives and reductions", T, float, double) {
    Mat<T> a = test::gaussian<T>(5, 4, 31), b = test::gaussian<T>(5, 4, 32);
    Mat<T> c = a;
    cpu.axpy(T(2), b, c);
    CHECK(test::relative_error(c, Mat<T>(a + 2 * b)) < 4 * test::eps<T>());
    cpu.scale(T(-1), c);
    CHECK(test::relative_error(c, Mat<T>(-(a + 2 * b))) < 4 * test::eps<T>());
    Mat<T> d = a;
    cpu.scale_columns(d, std::vector<T>{1, 2, 3, 4});
    CHECK(d.col(3) == T(4) * a.col(3));
    CHECK_THROWS_AS(cpu.scale_columns(d, std::vector<T>{1}), loranull::error);
    Mat<T> e = a;
    cpu.scale_rows(e, std::vector<T>{1, 2, 3, 4, 5});
    CHECK(e.row(4) == T(5) * a.row(4));
    CHECK_THROWS_AS(cpu.scale_rows(e, std::vector<T>{1, 2}), loranull::error);
    Mat<T> sq = test::gaussian<T>(4, 4, 33);
    const T trace_before = cpu.trace(sq);
    cpu.add_to_diagonal(sq, T(1));
    CHECK(cpu.trace(sq) == doctest::Approx(trace_before + 4).epsilon(1e-5));
    CHECK(cpu.max_coeff(a) == a.maxCoeff());
    Mat<T> negative = -Mat<T>::Ones(2, 2);
    CHECK(cpu.max_coeff(negative) == T(-1));  // signed, not |.|
    CHECK(cpu.frobenius_norm(a) == doctest::Approx(a.norm()));
    CHECK(cpu.all_finite(a));
    a(2, 1) = std::numeric_limits<T>::infinity();
    CHECK_FALSE(cpu.all_finite(a));
    CHECK_THROWS_AS(cpu.max_coeff(Mat<T>(0, 3)), loranull::error);
    CHECK_THROWS_AS(cpu.trace(Mat<T>(2, 3)), loranull::error);
}

TEST_CASE("LAPACK workspace sizes survive float rounding (ssyevd at n = 4096 needs > 2^24 words)") {
    // The documented minimum lwork for ssyevd at n = 4096 is 33,579,009; float
    // rounds it to 33,579,008. Check the wrapper's arithmetic without running
    // the 4-second decomposition: max(query rounded up, minimum) >= minimum.
    const float query = static_cast<float>(1 + 6 * 4096 + 2 * 4096LL * 4096);
    CHECK(static_cast<long long>(query) < 1 + 6 * 4096 + 2 * 4096LL * 4096);
    CHECK(lapack::workspace(query, 1 + 6 * 4096 + 2 * 4096LL * 4096, "test") >= 33579009);
}
