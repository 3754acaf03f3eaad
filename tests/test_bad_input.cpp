// Numerical bad input at every public entry point of linalg/, lora/ and
// llama/ (docs/reliability.md, "Numerical bad input"): one table per layer, one
// row per (entry point, bad argument), each call must throw one
// loranull::error whose message names the argument. And what is not an
// error must not be a NaN either: every method on all-zero, single-token and
// rounding-negative calibrations returns finite factors, and null spaces stay
// finite and orthonormal with their negative eigenvalues clamped and counted.
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include <loranull/backend/cpu/cpu_backend.hpp>
#include <loranull/linalg.hpp>
#include <loranull/llama.hpp>
#include <loranull/llama/evaluate.hpp>
#include <loranull/lora.hpp>

#include "error_message.hpp"

// Not checked, on purpose: the forward and backward passes of layers and
// models (LoraLinear::forward, LlamaModel::forward) take activations as they
// come, as every training loop's hot path does; NaN is caught where data
// enters (covariances, files) and where a number leaves (losses, NLL).

using namespace loranull;
using Mat = Eigen::MatrixXd;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

struct BadInput {
    std::string entry;  // the entry point
    std::string bad;    // what is wrong with its input
    std::function<void()> call;
    std::vector<std::string> named;  // what the message must name
};

void check_table(const std::vector<BadInput>& table) {
    for (const BadInput& c : table) {
        CAPTURE(c.entry);
        CAPTURE(c.bad);
        const std::string message = test::error_message(c.call);
        CAPTURE(message);
        CHECK_MESSAGE(!message.empty(), "no loranull::error was thrown");
        for (const std::string& word : c.named) CHECK_MESSAGE(message.find(word) != std::string::npos, word);
    }
}

Mat with(Mat m, Index i, Index j, double v) {
    m(i, j) = v;
    return m;
}

Mat random_matrix(Index rows, Index cols, std::uint64_t seed) {
    Rng rng(seed);
    CpuBackend cpu;
    return cpu.upload(random_normal<double>(rows, cols, rng));
}

/// C = Q diag(lambda) Q^T with Q a random orthogonal matrix.
Mat with_spectrum(const std::vector<double>& lambda, std::uint64_t seed) {
    const Index n = static_cast<Index>(lambda.size());
    const Eigen::HouseholderQR<Mat> qr(random_matrix(n, n, seed));
    const Mat q = qr.householderQ();
    Mat d = Mat::Zero(n, n);
    for (Index i = 0; i < n; ++i) d(i, i) = lambda[static_cast<std::size_t>(i)];
    Mat c = q * d * q.transpose();
    return (c + c.transpose()) / 2;
}

Covariance<CpuBackend, double> covariance_of(CpuBackend& cpu, const Mat& x) {
    Covariance<CpuBackend, double> c(cpu, x.rows());
    c.add(x);
    return c;
}

double orthonormality_error(const Mat& u) {
    return (u.transpose() * u - Mat::Identity(u.cols(), u.cols())).norm();
}

}  // namespace

TEST_CASE("bad input: linalg/ (covariances, eigensolvers, SVDs, null spaces)") {
    CpuBackend cpu;
    const Mat x = random_matrix(5, 12, 1);
    const Mat c = x * x.transpose();
    const Mat a = random_matrix(6, 4, 2);
    Covariance<CpuBackend, double> empty(cpu, 5);
    check_table({
        {"Covariance", "dim 0", [&] { Covariance<CpuBackend, double>(cpu, 0); }, {"dim"}},
        {"Covariance", "reference divisor 0", [&] { Covariance<CpuBackend, double>(cpu, 3, Normalisation::reference, "", 0); }, {"divisor"}},
        {"Covariance::add", "NaN in X", [&] { Covariance<CpuBackend, double>(cpu, 5).add(with(x, 2, 3, kNaN)); }, {"NaN or Inf"}},
        {"Covariance::add", "Inf in X", [&] { Covariance<CpuBackend, double>(cpu, 5).add(with(x, 0, 0, -kInf)); }, {"NaN or Inf"}},
        {"Covariance::add", "X of 4 rows for dim 5", [&] { Covariance<CpuBackend, double>(cpu, 5).add(Mat(random_matrix(4, 3, 3))); }, {"rows"}},
        {"Covariance::add_samples", "tokens per sample not dividing", [&] { Covariance<CpuBackend, double>(cpu, 5).add_samples(x, 5); }, {"tokens"}},
        {"Covariance::matrix", "empty accumulator", [&] { (void)empty.matrix(); }, {"no activations"}},
        {"Covariance::merge", "dims 5 and 3", [&] { Covariance<CpuBackend, double> m(cpu, 5); m.merge(Covariance<CpuBackend, double>(cpu, 3)); }, {"dimensions differ"}},
        {"symmetric_eigen", "NaN in C", [&] { symmetric_eigen(cpu, with(c, 1, 1, kNaN)); }, {"NaN or Inf"}},
        {"symmetric_eigen", "C not square", [&] { symmetric_eigen(cpu, Mat(a)); }, {"square"}},
        {"smallest_eigenpairs", "k = 0", [&] { smallest_eigenpairs(cpu, c, 0); }, {"k"}},
        {"smallest_eigenpairs", "k > n", [&] { smallest_eigenpairs(cpu, c, 6); }, {"k"}},
        {"largest_eigenpairs", "Inf in C", [&] { largest_eigenpairs(cpu, with(c, 0, 4, kInf), 2); }, {"NaN or Inf"}},
        {"largest_eigenpairs", "k > n", [&] { largest_eigenpairs(cpu, c, 9); }, {"k"}},
        {"thin_svd", "NaN in A", [&] { thin_svd(cpu, with(a, 5, 3, kNaN)); }, {"NaN or Inf"}},
        {"truncated_svd", "k = 0", [&] { truncated_svd(cpu, a, 0); }, {"k"}},
        {"truncated_svd", "k > min(m, n)", [&] { truncated_svd(cpu, a, 5); }, {"k"}},
        {"truncated_svd", "Inf in A", [&] { truncated_svd(cpu, with(a, 0, 0, kInf), 2); }, {"NaN or Inf"}},
        {"randomized_svd", "k > min(m, n)", [&] { randomized_svd(cpu, a, 5); }, {"k"}},
        {"randomized_svd", "NaN in A", [&] { randomized_svd(cpu, with(a, 1, 1, kNaN), 2); }, {"NaN or Inf"}},
        {"null_space", "r = 0", [&] { null_space(cpu, c, 0); }, {"rank r = 0"}},
        {"null_space", "r > n", [&] { null_space(cpu, c, 6); }, {"rank r = 6"}},
        {"null_space", "NaN in C", [&] { null_space(cpu, with(c, 2, 2, kNaN), 2); }, {"NaN or Inf"}},
        {"null_space", "empty covariance", [&] { null_space(empty, 2); }, {"no activations"}},
        {"null_space", "C not positive semi-definite", [&] { null_space(cpu, with_spectrum({-1, 1, 2, 3, 4}, 4), 2); }, {"not positive semi-definite", "eigenvalue -1"}},
        {"NullSpace::project", "W of 4 columns for n = 5", [&] { null_space(cpu, c, 2).project(cpu, Mat(random_matrix(3, 4, 5))); }, {"columns"}},
    });
}

TEST_CASE("null space: eigenvalues made negative by rounding are clamped to 0, counted, and the basis stays orthonormal") {
    CpuBackend cpu;
    // Exact zeros perturbed below 0 by far less than the tolerance (10 eps lambda_max).
    const Mat c = with_spectrum({-1e-16, -3e-17, 0.0, 2.0, 5.0, 9.0}, 6);
    const auto space = null_space(cpu, c, 3);
    CHECK(space.basis.allFinite());
    CHECK(orthonormality_error(space.basis) < 1e-12);
    for (double v : space.eigenvalues) CHECK(v >= 0.0);
    CHECK(space.rank_report.negative_eigenvalues_clamped >= 1);
    CHECK(space.energy_fraction() >= 0.0);
    // And the way it happens in practice: a rank-deficient float covariance of few tokens.
    CpuBackend cpu_f;
    Rng rng(7);
    const Eigen::MatrixXf xf = cpu_f.upload(random_normal<float>(64, 20, rng));
    Covariance<CpuBackend, float> cf(cpu_f, 64);
    cf.add(xf);
    const auto sf = null_space(cf, 8);  // 44 exact zeros computed in float: some come out negative
    CHECK(sf.basis.allFinite());
    CHECK(orthonormality_error(sf.basis.cast<double>()) < 1e-5);
    for (float v : sf.eigenvalues) CHECK(v >= 0.0f);
    CHECK(sf.rank_report.deficient);
}

TEST_CASE("bad input: lora/ (every method through initialise, and LoraLinear)") {
    CpuBackend cpu;
    const Mat w = random_matrix(6, 5, 11);
    const Mat x = random_matrix(5, 40, 12);
    const auto cov = covariance_of(cpu, x);
    const Mat c = cov.matrix();
    Covariance<CpuBackend, double> empty(cpu, 5);
    const auto cov4 = covariance_of(cpu, random_matrix(4, 10, 13));
    std::vector<BadInput> table;
    for (const MethodInfo& info : method_table) {
        if (info.name == "lora-null-v1" || info.name == "lora-null-v2") continue;  // the same initialisation as lora-null
        const std::string m(info.name);
        auto call = [&cpu, &cov, info](Mat weight, LoraConfig config, const Covariance<CpuBackend, double>* data) {
            return [&cpu, &cov, info, weight, config, data] {
                MethodData<CpuBackend, double> d;
                d.covariance = data ? data : &cov;
                (void)initialise(cpu, weight, info.method, d, config);
            };
        };
        table.push_back({m, "rank 0", call(w, LoraConfig{0}, nullptr), {"rank r = 0"}});
        table.push_back({m, "rank 6 > min(6, 5)", call(w, LoraConfig{6}, nullptr), {"rank r = 6"}});
        table.push_back({m, "NaN in W", call(with(w, 3, 2, kNaN), LoraConfig{2}, nullptr), {"W", "NaN or Inf"}});
        table.push_back({m, "Inf in W", call(with(w, 0, 4, kInf), LoraConfig{2}, nullptr), {"W", "NaN or Inf"}});
        table.push_back({m, "alpha NaN", call(w, LoraConfig{2, kNaN}, nullptr), {"alpha"}});
        table.push_back({m, "alpha 0", call(w, LoraConfig{2, 0.0}, nullptr), {"alpha"}});
        table.push_back({m, "W empty (0 x 5)", call(Mat(0, 5), LoraConfig{1}, nullptr), {"W is 0 x 5"}});
        if (info.needs_data) {
            table.push_back({m, "empty covariance", call(w, LoraConfig{2}, &empty), {"empty"}});
            table.push_back({m, "covariance of dim 4 for W with 5 columns", call(w, LoraConfig{2}, &cov4), {"covariance is 4 x 4"}});
            table.push_back({m, "no calibration data", [&cpu, &w, info] { (void)initialise(cpu, w, info.method, MethodData<CpuBackend, double>{}, LoraConfig{2}); }, {"needs calibration data"}});
            table.push_back({m, "NaN in a plain covariance matrix", [&cpu, &w, &c, info] {
                const Mat bad = with(with(c, 1, 2, kNaN), 2, 1, kNaN);
                MethodData<CpuBackend, double> d;
                d.covariance_matrix = &bad;
                (void)initialise(cpu, w, info.method, d, LoraConfig{2});
            }, {"NaN or Inf"}});
        }
    }
    check_table(table);

    const Mat w2 = random_matrix(5, 5, 14);
    LoraLinear<CpuBackend, double> layer(cpu, lora(cpu, w2, LoraConfig{2}));
    auto mismatched = lora(cpu, w2, LoraConfig{2});
    mismatched.W_res = random_matrix(4, 5, 17);
    auto infinite_scale = lora(cpu, w2, LoraConfig{2});
    infinite_scale.scale = kInf;
    check_table({
        {"LoraLinear::forward", "x of 4 rows for n = 5", [&] { (void)layer.forward(random_matrix(4, 3, 15)); }, {"rows"}},
        {"LoraLinear", "W_res of another shape than B A", [&] { LoraLinear<CpuBackend, double>(cpu, mismatched); }, {"W_res is 4 x 5"}},
        {"LoraLinear", "scale Inf", [&] { LoraLinear<CpuBackend, double>(cpu, infinite_scale); }, {"scale"}},
    });
}

TEST_CASE("no method returns NaN factors: all-zero, single-token and rank-deficient calibrations") {
    CpuBackend cpu;
    const Mat w = random_matrix(6, 5, 21);
    struct Calibration {
        std::string name;
        Mat x;
    };
    const std::vector<Calibration> calibrations = {
        {"all-zero activations", Mat::Zero(5, 30)},
        {"a single token", random_matrix(5, 1, 22)},
        {"two tokens (rank 2 < n - r)", random_matrix(5, 2, 23)},
        {"constant activations", Mat::Constant(5, 8, 0.5)},
    };
    for (const Calibration& cal : calibrations) {
        const auto cov = covariance_of(cpu, cal.x);
        for (const MethodInfo& info : method_table) {
            CAPTURE(cal.name);
            CAPTURE(info.name);
            MethodData<CpuBackend, double> d;
            d.covariance = &cov;
            const std::string message = test::error_message([&] {
                const auto f = initialise(cpu, w, info.method, d, LoraConfig{2});
                CHECK(f.A.allFinite());
                CHECK(f.B.allFinite());
                CHECK(f.W_res.allFinite());
                CHECK((f.W_res + f.scale * f.B * f.A - w).norm() <= 1e-10 * w.norm());
            });
            // A refusal is allowed only as one clear line about the calibration.
            if (!message.empty()) CHECK_MESSAGE(message.find("covariance") != std::string::npos, message);
        }
    }
}

TEST_CASE("bad input: llama/ (config, model, calibration, evaluation)") {
    CpuBackend cpu;
    LlamaConfig config;
    config.dim = 8, config.n_layers = 1, config.n_heads = 2, config.n_kv_heads = 1, config.hidden_dim = 12;
    config.vocab_size = 16, config.max_seq_len = 8;
    auto invalid = [&](auto change) {
        return [config, change]() mutable {
            change(config);
            config.validate();
        };
    };
    LlamaModel<CpuBackend, double> model(cpu, config);
    model.init_random(3);
    LlamaModel<CpuBackend, double> broken(cpu, config);
    broken.init_random(3);
    broken.blocks[0][ProjectionKind::q].weight(1, 1) = kNaN;  // reaches o_proj's input: a covariance sees it
    ModelCalibration<CpuBackend, double> calibration(cpu, config, Normalisation::plain, "test");
    const std::vector<std::int32_t> tokens = {1, 2, 3, 4, 5, 6, 7, 8};
    check_table({
        {"LlamaConfig::validate", "hidden_size 0", invalid([](LlamaConfig& c) { c.dim = 0; }), {"dim 0"}},
        {"LlamaConfig::validate", "heads not dividing hidden_size", invalid([](LlamaConfig& c) { c.n_heads = 3; }), {"n_heads 3"}},
        {"LlamaConfig::validate", "kv heads not dividing heads", invalid([](LlamaConfig& c) { c.n_kv_heads = 3; c.n_heads = 2; }), {"n_kv_heads 3"}},
        {"LlamaConfig::validate", "vocab_size 0", invalid([](LlamaConfig& c) { c.vocab_size = 0; }), {"vocab 0"}},
        {"LlamaConfig::validate", "rms_norm_eps NaN", invalid([](LlamaConfig& c) { c.norm_eps = kNaN; }), {"norm_eps"}},
        {"LlamaConfig::validate", "rope_theta 0", invalid([](LlamaConfig& c) { c.rope_theta = 0; }), {"rope_theta"}},
        {"LlamaModel::forward", "token 16 of a 16-token vocabulary", [&] { (void)model.forward({1, 16}, 2); }, {"16"}},
        {"LlamaModel::forward", "token -1", [&] { (void)model.forward({-1, 2}, 2); }, {"-1"}},
        {"LlamaModel::forward", "7 tokens, sequences of 2", [&] { (void)model.forward({1, 2, 3, 4, 5, 6, 7}, 2); }, {"7 tokens", "sequences of 2"}},
        {"LlamaModel::forward", "no tokens", [&] { (void)model.forward({}, 2); }, {"tokens"}},
        {"LlamaModel::forward", "sequences longer than max_position_embeddings", [&] { (void)model.forward(std::vector<std::int32_t>(16, 1), 16); }, {"max_seq_len = 8"}},
        {"ModelCalibration::calibrate", "NaN in a weight", [&] { calibration.calibrate(broken, tokens, 4); }, {"NaN or Inf"}},
        {"LlamaModel::loss", "NaN in a weight", [&] { (void)broken.loss(tokens, tokens, 4); }, {"the loss is", "NaN or Inf"}},
        {"sequence_nll", "NaN in a weight", [&] { (void)sequence_nll(broken, tokens, 4, 2); }, {"NaN or Inf"}},
        {"sequence_nll", "sequences of 1 token", [&] { (void)sequence_nll(model, tokens, 1, 2); }, {"at least 2"}},
    });
    // A single token per sequence calibrates (no prediction is needed).
    ModelCalibration<CpuBackend, double> single(cpu, config, Normalisation::plain, "single");
    single.calibrate(model, {3, 5}, 1);
    CHECK(single.block(0).covariance(LinearInput::attn_in).tokens() == 2);
}
