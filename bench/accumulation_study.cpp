// How much of the null space survives float panels (docs/math.md,
// "accumulation"): the bottom-r subspace of a covariance accumulated as
//
//   fp64          float activations converted, products and sum in double
//                 (the reference: every product of two floats is exact in double)
//   fp32-panels   each chunk's X X^T in float (?ssyrk), added to a double sum
//   fp32          everything in float (for scale; no option offers it)
//
// against the reference, on synthetic activations X = Q diag(sqrt(lambda)) Z
// (Q random orthogonal, Z Gaussian, lambda decaying geometrically over D
// decades) and on pairs of covariance files (loranull-build
// --save-covariances with --accumulate fp64 and fp32-panels). Measured:
//
//   angle    the largest principal angle between the two bottom-r subspaces
//            (acos of the smallest singular value of U_ref^T U), radians
//   excess   E(U) / E(U_ref) - 1, E(U) = tr(U^T C U) / tr(C) with the
//            reference C: how much more pre-trained energy reaches the
//            adapter's input space (the knowledge bound's square scales with E)
//
//   accumulation_study [--rank R] [--tokens T] [--chunk T] [--files REF CANDIDATE]...
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include <loranull/loranull.hpp>

using namespace loranull;
using B = CpuBackend;
using MatrixD = B::Matrix<double>;
using MatrixF = B::Matrix<float>;

namespace {

struct Comparison {
    double angle = 0, excess = 0;
};

/// Largest principal angle between span(u) and span(v), and the energy excess of v over u under c.
Comparison compare(B& b, const MatrixD& c, const MatrixD& u_ref, const MatrixD& u) {
    Comparison out;
    const auto svd = b.thin_svd(MatrixD(u_ref.transpose() * u));
    const double smallest = std::min(1.0, svd.singular_values.back());
    out.angle = std::acos(smallest);
    const double trace = c.trace();
    const double e_ref = (u_ref.transpose() * c * u_ref).trace() / trace;
    const double e = (u.transpose() * c * u).trace() / trace;
    out.excess = e / e_ref - 1;
    return out;
}

void print(const std::string& what, const Comparison& c) {
    std::printf("  %-12s angle %.3e rad  excess %+.3e\n", what.c_str(), c.angle, c.excess);
}

void synthetic(B& b, Index n, double decades, Index rank, Index tokens, Index chunk) {
    Rng rng(static_cast<std::uint64_t>(n * 100 + decades));
    const MatrixD q = b.thin_q(b.upload(random_normal<double>(n, n, rng)));
    MatrixD scaled = b.upload(random_normal<double>(n, tokens, rng));
    for (Index i = 0; i < n; ++i) scaled.row(i) *= std::sqrt(std::pow(10.0, -decades * double(i) / double(n - 1)));
    const MatrixF x = (q * scaled).cast<float>();  // the activations, float as a forward pass gives them

    Covariance<B, double> fp64(b, n), panels(b, n);
    panels.set_accumulation(Accumulation::fp32_panels);
    Covariance<B, float> fp32(b, n);
    for (Index start = 0; start < tokens; start += chunk) {
        const MatrixF part = x.middleCols(start, std::min(chunk, tokens - start));
        fp64.add_samples(part, part.cols());
        panels.add_samples(part, part.cols());
        fp32.add_samples(part, part.cols());
    }
    const MatrixD c = fp64.matrix();
    const NullSpace<B, double> ref = null_space(fp64, rank);
    std::printf("n = %ld, eigenvalues over %.0f decades, %ld tokens in chunks of %ld, r = %ld (lambda_r / lambda_max = %.1e)\n",
                long(n), decades, long(tokens), long(chunk), long(rank), std::pow(10.0, -decades * double(n - rank) / double(n - 1)));
    // The float routes' rounding makes tail eigenvalues come out slightly
    // negative; their null spaces are taken with float's tolerance.
    NullSpaceOptions float_tolerance;
    float_tolerance.zero_tolerance = 10 * std::numeric_limits<float>::epsilon() * ref.trace;
    print("fp32-panels", compare(b, c, ref.basis, null_space(panels, rank, float_tolerance).basis));
    print("fp32", compare(b, c, ref.basis, null_space(fp32, rank, float_tolerance).basis.cast<double>()));
}

void files(B& b, const std::string& reference, const std::string& candidate, Index rank) {
    const auto ref = io::load_covariance<double>(b, reference);
    const auto other = io::load_covariance<double>(b, candidate);
    const NullSpace<B, double> u_ref = null_space(ref, rank);
    std::printf("%s against %s, r = %ld\n", candidate.c_str(), reference.c_str(), long(rank));
    print("file", compare(b, ref.matrix(), u_ref.basis, null_space(other, rank).basis));
}

}  // namespace

int main(int argc, char** argv) {
    B b;
    Index rank = 128, tokens = 16384, chunk = 4096;
    std::vector<std::pair<std::string, std::string>> pairs;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--rank" && i + 1 < argc) rank = std::atol(argv[++i]);
        else if (a == "--tokens" && i + 1 < argc) tokens = std::atol(argv[++i]);
        else if (a == "--chunk" && i + 1 < argc) chunk = std::atol(argv[++i]);
        else if (a == "--files" && i + 2 < argc) { pairs.emplace_back(argv[i + 1], argv[i + 2]); i += 2; }
        else { std::fprintf(stderr, "usage: accumulation_study [--rank R] [--tokens T] [--chunk T] [--files REF CANDIDATE]...\n"); return 2; }
    }
    if (!pairs.empty()) {
        for (const auto& [ref, candidate] : pairs) files(b, ref, candidate, rank);
        return 0;
    }
    for (Index n : {Index(1024), Index(2816)})
        for (double decades : {5.0, 7.0, 9.0}) synthetic(b, n, decades, rank, tokens, chunk);
}
