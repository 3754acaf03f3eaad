// null_space_demo: the calibration half of LoRA-Null on one layer, end to end.
//
//   1. stream "pre-trained" activations of a layer through a Covariance
//      accumulator (samples of 256 tokens, the reference normalisation),
//   2. save it, load it back, and take its null space of rank r,
//   3. show what the null space buys: for a weight W, the part W P that
//      LoRA-Null hands to the adapter barely responds to held-out activations,
//      unlike the same rank taken from a random or from the principal subspace.
//
// The activations are synthetic but shaped like a transformer's: most of the
// energy in a few directions (eigenvalues decaying over four decades), the way
// real hidden states are anisotropic.
//
// usage: null_space_demo [--dim N] [--rank R] [--samples S] [--out FILE]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <loranull/loranull.hpp>

using namespace loranull;
using Clock = std::chrono::steady_clock;
using Mat = CpuBackend::Matrix<float>;

namespace {

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

/// n x tokens activations x = Q D g: g standard normal, D = diag(decay^i)
/// spanning four decades, Q a fixed random rotation (the layer's "basis").
struct ActivationSource {
    CpuBackend& cpu;
    Mat rotation;  // n x n
    Mat scale;     // n x 1

    ActivationSource(CpuBackend& backend, Index n) : cpu(backend) {
        Rng rng(2503);
        rotation = cpu.thin_q(cpu.upload(random_normal<float>(n, n, rng)));
        HostMatrix<float> d(n, 1);
        for (Index i = 0; i < n; ++i) d(i, 0) = static_cast<float>(std::pow(1e-2, double(i) / double(n - 1)));
        scale = cpu.upload(d);
    }

    Mat sample(Index tokens, std::uint64_t seed) const {
        Rng rng(seed);
        Mat g = cpu.upload(random_normal<float>(rotation.rows(), tokens, rng));
        g = scale.asDiagonal() * g;  // the demo may use Eigen directly: it is CPU-only
        return product(cpu, rotation, g);
    }
};

/// ||M X||_F / ||W X||_F: how much of the layer's response to X passes through M.
double response_share(CpuBackend& cpu, const Mat& m, const Mat& w, const Mat& x) {
    return cpu.frobenius_norm(product(cpu, m, x)) / cpu.frobenius_norm(product(cpu, w, x));
}

Index arg(int argc, char** argv, const std::string& name, Index fallback) {
    for (int i = 1; i + 1 < argc; ++i)
        if (argv[i] == name) return std::stol(argv[i + 1]);
    return fallback;
}

}  // namespace

int main(int argc, char** argv) try {
    const Index n = arg(argc, argv, "--dim", 1024);
    const Index r = arg(argc, argv, "--rank", 64);
    const Index samples = arg(argc, argv, "--samples", 32);
    const Index tokens = 256, m = n;
    std::string out = "null_space_demo_covariance.safetensors";
    for (int i = 1; i + 1 < argc; ++i)
        if (std::string(argv[i]) == "--out") out = argv[i + 1];
    for (int i = 1; i < argc; ++i)
        if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
            std::puts("usage: null_space_demo [--dim N] [--rank R] [--samples S] [--out FILE]");
            return 0;
        }

    CpuBackend cpu;
    ActivationSource source(cpu, n);
    std::printf("LoRA-Null calibration on one %td x %td layer, rank r = %td\n\n", m, n, r);

    // 1. Calibration: one sample at a time, as a forward hook would see them.
    auto start = Clock::now();
    Covariance<CpuBackend> covariance(cpu, n, Normalisation::reference, "synthetic-anisotropic:seed2503");
    for (Index k = 0; k < samples; ++k) {
        covariance.add(source.sample(tokens, 1000 + k));
        std::printf("\r  calibrating: sample %td/%td", k + 1, samples);
        std::fflush(stdout);
    }
    std::printf("\r  calibrated: %td samples, %td tokens, %s normalisation, %.2f s\n", covariance.samples(),
                static_cast<Index>(covariance.tokens()), std::string(normalisation_name(covariance.normalisation())).c_str(),
                seconds_since(start));

    // 2. Save, reload (what a two-stage pipeline does), decompose.
    io::save_covariance(covariance, out);
    auto loaded = io::load_covariance<double>(cpu, out);
    std::printf("  saved and reloaded %s (%td x %td, f64)\n", out.c_str(), loaded.dim(), loaded.dim());
    start = Clock::now();
    auto null_space = loranull::null_space(loaded, r);
    std::printf("  null space: r = %td smallest eigenpairs in %.2f s; eigenvalues %.3g .. %.3g\n", r,
                seconds_since(start), null_space.eigenvalues.front(), null_space.eigenvalues.back());
    std::printf("  energy fraction in the null space: %.3g (sum of the r smallest / trace)\n",
                null_space.energy_fraction());
    std::printf("  rank report: %s\n\n",
                null_space.rank_report.deficient ? null_space.rank_report.message().c_str() : "well defined");

    // 3. What the adapter's share W P responds to, on held-out activations.
    Rng rng(7);
    const Mat w = cpu.upload(random_normal<float>(m, n, rng, 1.0 / std::sqrt(double(n))));
    const Mat held_out = source.sample(4 * tokens, 424242);
    const Mat basis = cpu.convert<float>(null_space.basis);
    auto share_of = [&](const Mat& u) {
        const Mat wp = product(cpu, product(cpu, w, u), u, Op::none, Op::transpose);  // W U U^T
        return response_share(cpu, wp, w, held_out);
    };
    const Mat random_basis = cpu.thin_q(cpu.upload(random_normal<float>(n, r, rng)));
    const auto principal = largest_eigenpairs(cpu, loaded.matrix(), r);
    std::printf("  ||W P X|| / ||W X|| on held-out activations, P = U U^T of rank %td:\n", r);
    std::printf("    %-34s %10.3g\n", "LoRA-Null (null space of C)", share_of(basis));
    std::printf("    %-34s %10.3g\n", "random subspace", share_of(random_basis));
    std::printf("    %-34s %10.3g\n\n", "principal subspace of C", share_of(cpu.convert<float>(principal.vectors)));

    // W P has rank r: its randomized SVD is exact up to rounding.
    const Mat wp = null_space.project(cpu, cpu.convert<double>(w)).cast<float>();
    start = Clock::now();
    const auto fast = randomized_svd(cpu, wp, r, {10, 1, 0});
    const double t_fast = seconds_since(start);
    start = Clock::now();
    const auto exact = truncated_svd(cpu, wp, r);
    const double t_exact = seconds_since(start);
    double worst = 0;
    for (Index i = 0; i < r; ++i)
        worst = std::max(worst, std::abs(double(fast.singular_values[i]) / exact.singular_values[i] - 1));
    std::printf("  top-%td SVD of W P: randomized %.3f s, exact %.3f s, worst singular value error %.2g\n", r,
                t_fast, t_exact, worst);
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "null_space_demo: %s\n", e.what());
    return 1;
}
