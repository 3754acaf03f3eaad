// lora/: every initialiser (W = W_res + s B A and the method's defining
// property), the LoraLinear layer (output unchanged at init, finite-difference
// gradients in double, merge, conversion to a plain rank-2r LoRA), and the
// knowledge-preservation bound of SPEC.md section 4.
#include <doctest/doctest.h>

#include "test_util.hpp"

using namespace loranull;
using test::Mat;

namespace {
CpuBackend cpu;


template <class T>
Mat<T> reconstructed(const LoraFactors<CpuBackend, T>& f) {
    return f.W_res + f.scale * f.B * f.A;
}

/// Orthonormal basis of the row space of A (r x n) as n x r.
template <class T>
Mat<double> row_space(const Mat<T>& a) {
    Eigen::JacobiSVD<Mat<double>> svd(a.template cast<double>().transpose(), Eigen::ComputeThinU);
    return svd.matrixU();
}

template <class T>
double tolerance(Index m, Index n) { return 50 * std::sqrt(double(m * n)) * test::eps<T>(); }
}  // namespace

TEST_CASE_TEMPLATE("every initialiser: W_res + s B A reproduces W, shapes, scale", T, float, double) {
    const Index m = 24, n = 17, r = 4;
    const Mat<T> w = test::gaussian<T>(m, n, 1);
    Covariance<CpuBackend> knowledge(cpu, n, Normalisation::plain, "knowledge");
    knowledge.add(test::anisotropic_activations<T>(n, 200, 2));
    const LoraConfig config{r, 8.0, 7};  // s = 2
    std::vector<LoraFactors<CpuBackend, T>> all = {
        lora(cpu, w, config), lora(cpu, w, config, LoraDistribution::gaussian), pissa(cpu, w, config),
        pissa_fast(cpu, w, config), milora(cpu, w, config), olora(cpu, w, config),
        corda_kpm(cpu, w, knowledge, config), corda_ipm(cpu, w, knowledge, config),
        lora_null(cpu, w, knowledge, config), eva(cpu, w, knowledge, config)};
    for (const auto& f : all) {
        INFO(f.method);
        CHECK(f.A.rows() == r);
        CHECK(f.A.cols() == n);
        CHECK(f.B.rows() == m);
        CHECK(f.B.cols() == r);
        CHECK(f.W_res.rows() == m);
        CHECK(f.W_res.cols() == n);
        CHECK(f.scale == T(2));
        CHECK(test::relative_error(reconstructed(f), w) < tolerance<T>(m, n));
    }
}

TEST_CASE("reconstruction_error_estimate is the exact error to within a factor 2, and seeded") {
    const Mat<double> w = test::gaussian<double>(40, 30, 1);
    auto f = pissa(cpu, w, LoraConfig{4, 8.0});
    CHECK(reconstruction_error_estimate(cpu, w, f) < 1e-14);  // rounding only
    // Wrong factors: a perturbed residual, rank one and full rank.
    for (const Mat<double>& error : {Mat<double>(test::gaussian<double>(40, 1, 2) * test::gaussian<double>(1, 30, 3)),
                                     Mat<double>(test::gaussian<double>(40, 30, 4))}) {
        auto g = f;
        g.W_res += 1e-3 * error;
        const double exact = reconstruction_error(cpu, w, g), estimate = reconstruction_error_estimate(cpu, w, g);
        CHECK(estimate > exact / 2);
        CHECK(estimate < exact * 2);
        CHECK(estimate == reconstruction_error_estimate(cpu, w, g));  // the same probes every time
    }
}

TEST_CASE("lora: Kaiming-uniform bounds, Gaussian spread, B = 0, seeded") {
    const Mat<double> w = test::gaussian<double>(30, 400, 1);
    auto f = lora(cpu, w, {16, {}, 3});
    CHECK(f.B.isZero());
    CHECK(f.W_res == w);
    CHECK(f.A.cwiseAbs().maxCoeff() <= 1 / std::sqrt(400.0));
    CHECK(f.A.cwiseAbs().maxCoeff() > 0.9 / std::sqrt(400.0));
    CHECK(lora(cpu, w, {16, {}, 3}).A == f.A);
    CHECK(lora(cpu, w, {16, {}, 4}).A != f.A);
    auto g = lora(cpu, w, {16, {}, 3}, LoraDistribution::gaussian);
    const double stddev = std::sqrt(g.A.squaredNorm() / double(g.A.size()));
    CHECK(stddev == doctest::Approx(1.0 / 16).epsilon(0.05));
}

TEST_CASE_TEMPLATE("pissa and milora: A's rows span W's top / bottom right-singular space", T, float, double) {
    const Index m = 40, n = 30, r = 5;
    std::vector<double> s(n);
    for (Index i = 0; i < n; ++i) s[i] = 10 * std::pow(0.8, double(i));
    const Mat<T> w = test::matrix_with_singular_values<T>(m, n, s, 5);
    const auto exact = cpu_reference::thin_svd<double>(w.template cast<double>());
    auto top = pissa(cpu, w, {r, 2.0 * r, 0});
    auto bottom = milora(cpu, w, {r, 2.0 * r, 0});
    const double gap_tolerance = 1e3 * test::eps<T>() * s[0] / (s[r - 1] - s[r]);
    CHECK(test::projector_distance(row_space(top.A), Mat<double>(exact.V.leftCols(r))) < gap_tolerance);
    CHECK(test::projector_distance(row_space(bottom.A), Mat<double>(exact.V.rightCols(r))) <
          1e3 * test::eps<T>() * s[0] / (s[n - r - 1] - s[n - r]));
    // The adapter carries exactly the principal part: s B A = U_r S_r V_r^T.
    Mat<double> principal = exact.U.leftCols(r) * test::vec(exact.singular_values).head(r).asDiagonal() * exact.V.leftCols(r).transpose();
    CHECK(test::relative_error(Mat<T>(top.scale * top.B * top.A), principal) < 100 * test::eps<T>() * n);
    // B = U S^1/2 / sqrt(s) and A = S^1/2 V^T / sqrt(s): balanced factors, B^T B = A A^T.
    CHECK(test::relative_error(Mat<T>(top.B.transpose() * top.B), Mat<T>(top.A * top.A.transpose())) <
          100 * test::eps<T>() * n);
    // pissa_fast with power iterations matches the exact one on this spectrum.
    auto fast = pissa_fast(cpu, w, {r, 2.0 * r, 1}, 4);
    CHECK(test::relative_error(Mat<T>(fast.B * fast.A), Mat<T>(top.B * top.A)) < 1e-3);
}

TEST_CASE_TEMPLATE("lora_null: rows of A in span(U_null), W_res = W - W P, the thin path equals the reference route", T, float, double) {
    const Index m = 20, n = 32, r = 6;
    const Mat<T> w = test::gaussian<T>(m, n, 11);
    const Mat<T> x = test::anisotropic_activations<T>(n, 300, 12, 0.85);
    Covariance<CpuBackend> knowledge(cpu, n, Normalisation::plain, "knowledge");
    knowledge.add(x);
    const LoraConfig config{r, {}, 0};
    const auto ns = null_space(knowledge, r);
    const auto f = lora_null(cpu, w, knowledge, config);
    const Mat<double> u = ns.basis;
    // Rows of A0 in span(U_null): A (I - U U^T) = 0.
    Mat<double> a = f.A.template cast<double>();
    CHECK((a - a * u * u.transpose()).norm() / a.norm() < 100 * test::eps<T>());
    // W_res = W - W P.
    Mat<double> wd = w.template cast<double>();
    CHECK(test::relative_error(f.W_res, Mat<double>(wd - wd * u * u.transpose())) < tolerance<T>(m, n));
    // The reference route: full eigendecomposition of C, then the m x n SVD of W P, top r.
    const auto full = cpu_reference::symmetric_eigen<double>(knowledge.matrix());
    Mat<double> p = full.vectors.leftCols(r) * full.vectors.leftCols(r).transpose();
    const auto svd = cpu_reference::thin_svd<double>(Mat<double>(wd * p));
    Mat<double> reference_product = svd.U.leftCols(r) * test::vec(svd.singular_values).head(r).asDiagonal() * svd.V.leftCols(r).transpose();
    CHECK(test::relative_error(Mat<T>(f.scale * f.B * f.A), reference_product) < 1e3 * test::eps<T>() * n);
    // ||A X||_F <= ||A||_2 ||X^T U_null||_F (SPEC section 4's eps).
    const double ax = (a * x.template cast<double>()).norm();
    const double eps_x = (x.template cast<double>().transpose() * u).norm();
    Eigen::JacobiSVD<Mat<double>> sa(a);
    CHECK(ax <= sa.singularValues()(0) * eps_x * (1 + 1e-6) + 1e-12);
    CHECK(ax < 1e-2 * (wd * x.template cast<double>()).norm());  // the adapter sees little of X
    // A null space of the wrong rank or size is an error.
    CHECK_THROWS_AS(lora_null(cpu, w, ns, LoraConfig{r + 1}), loranull::error);
    CHECK_THROWS_AS(lora_null(cpu, test::gaussian<T>(m, n + 1, 1), ns, config), loranull::error);
}

TEST_CASE_TEMPLATE("corda: U S V^^T = W, so KPM's last r and IPM's first p - r add up to W", T, float, double) {
    const Index m = 14, n = 10;
    const Mat<T> w = test::gaussian<T>(m, n, 21);
    Covariance<CpuBackend> c(cpu, n);
    c.add(test::anisotropic_activations<T>(n, 100, 22, 0.7));
    auto kpm = corda_kpm(cpu, w, c, {3, {}, 0});
    auto ipm = corda_ipm(cpu, w, c, {n - 3, {}, 0});
    CHECK(test::relative_error(Mat<T>(kpm.B * kpm.A + ipm.B * ipm.A), w) < tolerance<T>(m, n) * 10);
    auto everything = corda_ipm(cpu, w, c, {n, {}, 0});
    CHECK(everything.W_res.norm() / w.norm() < tolerance<T>(m, n) * 10);  // all of W in the adapter
    // A covariance given as a plain matrix gives the same factors as the accumulator.
    const Mat<double> c_matrix = c.matrix();
    auto from_matrix = corda_kpm(cpu, w, c_matrix, {3, {}, 0});
    CHECK(test::relative_error(Mat<T>(from_matrix.B * from_matrix.A), Mat<T>(kpm.B * kpm.A)) < 1e3 * test::eps<T>());
    auto null_from_matrix = lora_null(cpu, w, c_matrix, LoraConfig{3});
    auto null_from_accumulator = lora_null(cpu, w, c, LoraConfig{3});
    CHECK(test::relative_error(Mat<T>(null_from_matrix.B * null_from_matrix.A),
                               Mat<T>(null_from_accumulator.B * null_from_accumulator.A)) < 1e3 * test::eps<T>());
    CHECK_THROWS_AS(corda_ipm(cpu, w, Mat<double>(Mat<double>::Identity(n + 1, n + 1)), LoraConfig{2}), loranull::error);
}

TEST_CASE("olora and eva: their defining structure") {
    const Mat<double> w = test::gaussian<double>(12, 9, 31);
    auto o = olora(cpu, w, {4, {}, 0});
    CHECK(test::orthonormality_error(o.B) < 1e-13);
    for (Index i = 0; i < 4; ++i)
        for (Index j = 0; j < i; ++j) CHECK(std::abs(o.A(i, j)) < 1e-13);  // R is upper triangular
    Covariance<CpuBackend> task(cpu, 9);
    task.add(test::anisotropic_activations<double>(9, 50, 3));
    auto e = eva(cpu, w, task, {3, {}, 0});
    CHECK(e.B.isZero());
    CHECK(test::orthonormality_error(Mat<double>(e.A.transpose())) < 1e-13);
    const auto top = largest_eigenpairs(cpu, task.matrix(), 3);
    CHECK(test::projector_distance(Mat<double>(e.A.transpose()), top.vectors) < 1e-10);
}

TEST_CASE_TEMPLATE("the layer's output is unchanged at initialisation for every residual method", T, float, double) {
    const Index m = 18, n = 15, r = 3;
    const Mat<T> w = test::gaussian<T>(m, n, 41), x = test::gaussian<T>(n, 9, 42);
    Covariance<CpuBackend> c(cpu, n);
    c.add(test::anisotropic_activations<T>(n, 100, 43));
    const LoraConfig config{r, 6.0, 0};
    for (auto f : {pissa(cpu, w, config), milora(cpu, w, config), corda_kpm(cpu, w, c, config),
                   lora_null(cpu, w, c, config), olora(cpu, w, config), lora(cpu, w, config)}) {
        INFO(f.method);
        LoraLinear<CpuBackend, T> layer(cpu, f);
        CHECK(test::relative_error(layer.forward(x), Mat<T>(w * x)) < tolerance<T>(m, n));
        CHECK(test::relative_error(layer.merged(), w) < tolerance<T>(m, n));
    }
}

TEST_CASE("LoraLinear backward matches finite differences (double), with and without frozen factors") {
    const Index m = 7, n = 6, r = 3, tokens = 5;
    Covariance<CpuBackend> c(cpu, n);
    c.add(test::anisotropic_activations<double>(n, 40, 1));
    auto f = pissa(cpu, test::gaussian<double>(m, n, 2), {r, 4.5, 0});
    f.B += 0.3 * test::gaussian<double>(m, r, 3);  // move off the init so that no term vanishes
    const Mat<double> x = test::gaussian<double>(n, tokens, 4), g = test::gaussian<double>(m, tokens, 5);
    for (Trainable trainable : {Trainable::both, Trainable::B_only, Trainable::A_only}) {
        LoraLinear<CpuBackend, double> layer(cpu, f, trainable);
        // L = <G, y> + 0.5 ||y||^2, so dL/dy = G + y.
        auto loss = [&](const LoraLinear<CpuBackend, double>& l, const Mat<double>& input) {
            Mat<double> y = l.forward(input);
            return (g.array() * y.array()).sum() + 0.5 * y.squaredNorm();
        };
        const auto grads = layer.backward(x, Mat<double>(g + layer.forward(x)));
        const double h = 1e-6;
        auto check_gradient = [&](const Mat<double>& analytic, auto&& perturb, Index rows, Index cols) {
            REQUIRE(analytic.rows() == rows);
            REQUIRE(analytic.cols() == cols);
            double worst = 0;
            for (Index i = 0; i < rows; ++i)
                for (Index j = 0; j < cols; ++j) {
                    const double numeric = (perturb(i, j, h) - perturb(i, j, -h)) / (2 * h);
                    worst = std::max(worst, std::abs(numeric - analytic(i, j)) / std::max(1.0, std::abs(numeric)));
                }
            CHECK(worst < 1e-7);
        };
        check_gradient(grads.dX, [&](Index i, Index j, double d) {
            Mat<double> xp = x;
            xp(i, j) += d;
            return loss(layer, xp);
        }, n, tokens);
        if (layer.trains_A())
            check_gradient(grads.dA, [&](Index i, Index j, double d) {
                auto l = layer;
                l.A(i, j) += d;
                return loss(l, x);
            }, r, n);
        else
            CHECK(grads.dA.size() == 0);
        if (layer.trains_B())
            check_gradient(grads.dB, [&](Index i, Index j, double d) {
                auto l = layer;
                l.B(i, j) += d;
                return loss(l, x);
            }, m, r);
        else
            CHECK(grads.dB.size() == 0);
    }
}

TEST_CASE_TEMPLATE("LoRA-Null v2: after arbitrary updates of B the SPEC section 4 bound holds", T, float, double) {
    const Index m = 16, n = 24, r = 5;
    const Mat<T> w = test::gaussian<T>(m, n, 51), x = test::anisotropic_activations<T>(n, 120, 52, 0.85);
    Covariance<CpuBackend, T> c(cpu, n);
    c.add(x);
    const auto ns = null_space(c, r);
    LoraLinear<CpuBackend, T> layer(cpu, lora_null(cpu, w, ns, {r, 2.0 * r, 0}), Trainable::B_only);
    auto at_init = knowledge_report(cpu, layer, x, &ns.basis);
    CHECK(at_init.output_change < 100 * test::eps<T>() * at_init.base_output);
    for (std::uint64_t trial = 0; trial < 5; ++trial) {
        layer.B = layer.B0 + T(10.0 * double(trial + 1)) * test::gaussian<T>(m, r, 60 + trial);  // any B'
        auto report = knowledge_report(cpu, layer, x, &ns.basis);
        CHECK(report.bound_applies);
        CHECK(report.output_change <= report.bound * (1 + 100 * test::eps<T>()));
        CHECK(report.bound <= report.null_space_bound * (1 + 100 * test::eps<T>()));
        CHECK(report.output_change > 0);
        // The same move of B through a LoRA-style A of the same norm changes the
        // pre-trained outputs far more: the null space is what protects them.
        LoraLinear<CpuBackend, T> plain(cpu, lora(cpu, w, {r, 2.0 * r, trial}), Trainable::B_only);
        plain.A *= layer.A0.norm() / plain.A.norm();
        plain.A0 = plain.A;
        plain.B = layer.B - layer.B0;
        const auto unprotected = knowledge_report(cpu, plain, x);
        CHECK(report.output_change < 0.25 * unprotected.output_change);
    }
    // v1 (A trains): the report says the bound no longer applies once A moved.
    LoraLinear<CpuBackend, T> v1(cpu, lora_null(cpu, w, ns, {r, {}, 0}), Trainable::both);
    v1.A(0, 0) += T(0.5);
    CHECK_FALSE(knowledge_report(cpu, v1, x).bound_applies);
}

TEST_CASE_TEMPLATE("to_plain_lora: W + up * down equals the trained merged weight, truncation", T, float, double) {
    const Index m = 13, n = 11, r = 3;
    const Mat<T> w = test::gaussian<T>(m, n, 71);
    LoraLinear<CpuBackend, T> layer(cpu, pissa(cpu, w, {r, 6.0, 0}));
    layer.A += T(0.1) * test::gaussian<T>(r, n, 72);
    layer.B += T(0.1) * test::gaussian<T>(m, r, 73);
    const auto plain = layer.to_plain_lora(w);
    CHECK(plain.rank() == 2 * r);
    CHECK(test::relative_error(Mat<T>(w + plain.up * plain.down), layer.merged()) < tolerance<T>(m, n));
    // Re-truncation to rank r: the best rank-r approximation, its stated error exact.
    const Mat<double> delta = (plain.up * plain.down).template cast<double>();
    const auto exact = cpu_reference::thin_svd<double>(delta);
    const auto cut = plain.truncated(cpu, r);
    CHECK(cut.rank() == r);
    const Mat<double> approx = (cut.up * cut.down).template cast<double>();
    CHECK((delta - approx).norm() == doctest::Approx(cut.truncation_error_frobenius).epsilon(1e-3));
    CHECK(cut.truncation_error_spectral == doctest::Approx(exact.singular_values[r]).epsilon(1e-3));
    CHECK(cut.truncation_error_frobenius == doctest::Approx(test::vec(exact.singular_values).segment(r, r).norm()).epsilon(1e-3));
    const auto full = plain.truncated(cpu, 2 * r);
    CHECK(test::relative_error(Mat<T>(full.up * full.down), Mat<T>(plain.up * plain.down)) < 1e3 * test::eps<T>());
    // Converting against the wrong base weight is caught.
    CHECK(test::error_message([&] { layer.to_plain_lora(Mat<T>(w * T(1.01))); }).find("not the weight") !=
          std::string::npos);
    CHECK_THROWS_AS(plain.truncated(cpu, 2 * r + 1), loranull::error);
}

TEST_CASE("initialisers and the layer reject bad input with clear messages") {
    const Mat<double> w = test::gaussian<double>(6, 5, 1);
    auto contains = [](const std::string& message, const char* part) {
        INFO(message);
        CHECK(message.find(part) != std::string::npos);
    };
    contains(test::error_message([&] { pissa(cpu, w, {6}); }), "need 1 <= r <= min(m, n) = 5");
    contains(test::error_message([&] { milora(cpu, w, {0}); }), "rank r = 0");
    contains(test::error_message([&] { lora(cpu, w, {2, 0.0}); }), "alpha = 0");
    contains(test::error_message([&] { lora(cpu, w, {2, -4.0}); }), "alpha = -4");
    Mat<double> bad = w;
    bad(2, 2) = std::numeric_limits<double>::quiet_NaN();
    contains(test::error_message([&] { olora(cpu, bad, {2}); }), "NaN or Inf");
    Covariance<CpuBackend> wrong(cpu, 4), empty(cpu, 5);
    wrong.add(test::gaussian<double>(4, 10, 2));
    contains(test::error_message([&] { lora_null(cpu, w, wrong, LoraConfig{2}); }), "covariance is 4 x 4, W has 5 columns");
    contains(test::error_message([&] { corda_kpm(cpu, w, empty, LoraConfig{2}); }), "covariance is empty");
    LoraLinear<CpuBackend, double> layer(cpu, pissa(cpu, w, {2}));
    contains(test::error_message([&] { layer.forward(test::gaussian<double>(4, 3, 1)); }), "expected 5 rows");
    contains(test::error_message([&] { layer.backward(test::gaussian<double>(5, 3, 1), test::gaussian<double>(6, 4, 1)); }),
             "dy is 6 x 4");
    auto f = pissa(cpu, w, {2});
    f.W_res = test::gaussian<double>(6, 4, 1);
    contains(test::error_message([&] { LoraLinear<CpuBackend, double>(cpu, f); }), "W_res is 6 x 4");
}
