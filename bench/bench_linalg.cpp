// bench_linalg: the three linear-algebra kernels of LoRA-Null on the CPU, each
// next to the peer a user would otherwise reach for, in one process so that a
// ratio is read from one run.
//
//   Accumulate/*     covariance accumulation C_lower += X X^T, X = n x 2048 float
//                    activations (n = 1024, 4096):
//                      loranull_Covariance_f32acc   Covariance<CpuBackend, float>::add(X)
//                      loranull_Covariance_f64acc   Covariance<CpuBackend> (double sum, the
//                                                   default) ::add(X) with float X
//                      OpenBLAS_ssyrk               cblas_ssyrk on the same X (the floor)
//                      OpenBLAS_dsyrk_preconverted  cblas_dsyrk on X already in double (the
//                                                   f64acc peer: shows the cost of the cast)
//                      Eigen_XXt_general            C.noalias() += X * X.transpose()
//                      Eigen_rankUpdate             C.selfadjointView<Lower>().rankUpdate(X)
//                    Counters: GFLOP/s counts the *useful* flops of a symmetric
//                    rank-k update, n^2 T per call, for every variant (so the
//                    general product, which executes 2 n^2 T, reads as half its
//                    raw rate); tokens/s = T per call.
//   NullSpace128/*   the 128 eigenvectors of smallest |eigenvalue| of a float
//                    covariance C = X X^T / T, X = Q D G (G n x 2n Gaussian, D a
//                    geometric row scale from 1 down to 1e-2, so eigenvalues span
//                    about 5 decades, Q a random rotation so that C is not
//                    nearly diagonal), n = 1024, 2048, 4096:
//                      loranull_null_space            null_space(cpu, C, 128) (?syevr, 129 pairs,
//                                                     plus trace, norm and rank report)
//                      loranull_smallest_eigenpairs   smallest_eigenpairs(cpu, C, 128)
//                      LAPACKE_ssyevd_all             all n pairs, loranull::lapack::syevd<float> on a copy
//                      Eigen_SelfAdjointEigenSolver_all  all n pairs (n = 1024, 2048; 4096 takes
//                                                     ~40 s per call: LORANULL_BENCH_SLOW=1 adds it)
//                    Counters (computed once, outside the timed loop): pairs;
//                    for null_space residual = ||C U - U diag(l)||_F / ||C||_F,
//                    energy_frac and zero_eigs (of the 129 computed values, how many
//                    its rank report calls zero; the label says "rank_report:deficient"
//                    when it flags the subspace as ambiguous); for ssyevd
//                    subspace_dist = ||P_syevd - P_null_space||_F
//                    / sqrt(2 r) between the two bottom-128 projectors (0 = same
//                    subspace, 1 = orthogonal).
//   Svd4096x1024/*   top-128 singular triplets of a 4096 x 1024 float matrix with
//                    singular values sigma_i = (1 + i)^-1/2 (a slow, weight-like decay):
//                      loranull_randomized_svd_k128_p10/q:0, q:2   randomized_svd, 0 or 2
//                                                     power iterations, oversampling 10
//                      loranull_thin_svd_gesdd        the exact thin SVD (LAPACK ?gesdd)
//                    Counters (once, outside the timed loop): sv_rel_err =
//                    ||s_k - s_k^exact||_2 / ||s_k^exact||_2 and sv_max_rel_err =
//                    max_i |s_i - s_i^exact| / s_i^exact against the thin SVD; for
//                    the thin SVD itself, the same against the designed spectrum.
//
// Targets we care about (ratios of the Time column of one run):
//   * loranull_Covariance_f32acc >= 0.9x the speed of OpenBLAS_ssyrk (the
//     wrapper costs at most a NaN scan), and >= 3x the speed of Eigen_XXt_general;
//   * bottom-128 at n = 4096: loranull_null_space >= 1.8x faster than
//     LAPACKE_ssyevd_all.
//
// Build and run (Release; the default -march=x86-64-v3 build is what we quote):
//   cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
//   cmake --build build --target bench_linalg
//   build/bench/bench_linalg                                  # everything, ~3 min on 2 cores
//   build/bench/bench_linalg --benchmark_out=bench_linalg.json --benchmark_out_format=json
//   build/bench/bench_linalg --benchmark_filter='n:1024'      # the small sizes only
//   LORANULL_BENCH_SLOW=1 build/bench/bench_linalg --benchmark_filter='NullSpace128/.*n:4096'
//   LORANULL_BENCH_QUICK=1 build/bench/bench_linalg           # one iteration each: a smoke test
// Iteration counts are fixed per benchmark (->Iterations), so --benchmark_min_time
// does not change them; use LORANULL_BENCH_QUICK for a fast pass. Run on a quiet
// machine: every kernel is multithreaded (OpenBLAS pthreads, Eigen OpenMP) and
// timed in real time, and a busy core slows the OpenMP products several-fold.
// The context header reports OpenBLAS's kernel (openblas_corename; the build
// machines may set OPENBLAS_CORETYPE=Haswell on purpose: run once with and once
// without it to report both), OPENBLAS_L2_SIZE and the thread counts. Debian's
// libbenchmark prints "Library was built as DEBUG": that is the harness, not us.
// bench/pytorch_linalg.py runs the same work in PyTorch.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>
#include <cblas.h>
#include <Eigen/Dense>

#include "loranull/backend/cpu/cpu_backend.hpp"
#include "loranull/core/random.hpp"
#include "loranull/linalg/covariance.hpp"
#include "loranull/linalg/null_space.hpp"
#include "loranull/linalg/svd.hpp"
#include "loranull/linalg/symmetric_eigen.hpp"

namespace {

using Idx = Eigen::Index;  // the library's index type (std::ptrdiff_t)
using Cpu = loranull::CpuBackend;
using MatF = Cpu::Matrix<float>;
using MatD = Cpu::Matrix<double>;

constexpr Idx kTokens = 2048;        // tokens per accumulated sample
constexpr Idx kNullRank = 128;       // r of the null space
constexpr Idx kSvdRows = 4096, kSvdCols = 1024, kSvdRank = 128, kSvdOversampling = 10;

Cpu& cpu() {
    static Cpu backend;
    return backend;
}

bool env_flag(const char* name) {
    const char* value = std::getenv(name);
    return value != nullptr && *value != '\0' && std::string_view(value) != "0";
}

/// The iteration count, or 1 under LORANULL_BENCH_QUICK.
int iterations(int wanted) {
    static const bool quick = env_flag("LORANULL_BENCH_QUICK");
    return quick ? 1 : wanted;
}

MatF gaussian(Idx rows, Idx cols, std::uint64_t seed) {
    loranull::Rng rng(seed);
    return cpu().upload(loranull::random_normal<float>(rows, cols, rng));
}

/// n x n random orthogonal matrix (Q of a Gaussian).
MatF random_rotation(Idx n, std::uint64_t seed) { return cpu().thin_q(gaussian(n, n, seed)); }

/// Row scales 1 .. last, geometric.
Eigen::VectorXf geometric_scales(Idx n, double last) {
    Eigen::VectorXf d(n);
    for (Idx i = 0; i < n; ++i)
        d(i) = static_cast<float>(std::pow(last, n > 1 ? static_cast<double>(i) / static_cast<double>(n - 1) : 0.0));
    return d;
}

/// Float activations n x kTokens (Gaussian, rows scaled 1 .. 1e-2; the values
/// do not change the speed of a rank update, only make the data plausible).
const MatF& activations(Idx n) {
    static std::map<Idx, MatF> cache;
    auto it = cache.find(n);
    if (it == cache.end()) {
        MatF x = geometric_scales(n, 1e-2).asDiagonal() * gaussian(n, kTokens, 1000 + static_cast<std::uint64_t>(n));
        it = cache.emplace(n, std::move(x)).first;
    }
    return it->second;
}

/// The realistic covariance of the null-space benchmarks (see the file comment):
/// C = Q (D G G^T D / T) Q^T with T = 2n tokens, exactly symmetric.
const MatF& covariance(Idx n) {
    static std::map<Idx, MatF> cache;
    auto it = cache.find(n);
    if (it == cache.end()) {
        const Idx tokens = 2 * n;
        const MatF y = geometric_scales(n, 1e-2).asDiagonal() * gaussian(n, tokens, 2000 + static_cast<std::uint64_t>(n));
        MatF c0 = MatF::Zero(n, n);
        cpu().syrk_lower(1.0f / static_cast<float>(tokens), y, c0);
        cpu().symmetrize_lower(c0);
        const MatF q = random_rotation(n, 3000 + static_cast<std::uint64_t>(n));
        const MatF qc = q * c0;
        MatF c = qc * q.transpose();
        cpu().symmetrize_lower(c);  // the product is symmetric up to rounding: make it exact
        it = cache.emplace(n, std::move(c)).first;
    }
    return it->second;
}

struct SvdProblem {
    MatF a;                       // kSvdRows x kSvdCols
    std::vector<float> designed;  // its singular values by construction
};

/// A = U diag(s) V^T with random orthonormal U, V and s_i = (1 + i)^-1/2.
const SvdProblem& svd_problem() {
    static const SvdProblem problem = [] {
        SvdProblem p;
        const MatF u = cpu().thin_q(gaussian(kSvdRows, kSvdCols, 4001));
        const MatF v = cpu().thin_q(gaussian(kSvdCols, kSvdCols, 4002));
        p.designed.resize(static_cast<std::size_t>(kSvdCols));
        for (Idx i = 0; i < kSvdCols; ++i)
            p.designed[static_cast<std::size_t>(i)] = static_cast<float>(1.0 / std::sqrt(1.0 + static_cast<double>(i)));
        const Eigen::Map<const Eigen::VectorXf> s(p.designed.data(), kSvdCols);
        p.a = (u * s.asDiagonal()) * v.transpose();
        return p;
    }();
    return problem;
}

/// Singular values of the exact thin SVD of svd_problem().a, computed once.
const std::vector<float>& exact_singular_values() {
    static const std::vector<float> values = loranull::thin_svd(cpu(), svd_problem().a).singular_values;
    return values;
}

/// (||s - ref||_2 / ||ref||_2, max_i |s_i - ref_i| / ref_i) over the first s.size() values.
std::pair<double, double> singular_value_errors(const std::vector<float>& s, const std::vector<float>& ref) {
    double diff2 = 0, ref2 = 0, worst = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const double d = static_cast<double>(s[i]) - static_cast<double>(ref[i]);
        diff2 += d * d;
        ref2 += static_cast<double>(ref[i]) * ref[i];
        worst = std::max(worst, std::abs(d) / static_cast<double>(ref[i]));
    }
    return {std::sqrt(diff2 / ref2), worst};
}

void set_rank_update_counters(benchmark::State& state, Idx n, Idx tokens) {
    const double useful_flops = static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(tokens);
    state.counters["GFLOP/s"] = benchmark::Counter(useful_flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsIterationInvariantRate);
}

// --- 1. covariance accumulation ---------------------------------------------

template <class Acc>
void BM_accumulate_covariance(benchmark::State& state) {
    const Idx n = state.range(0);
    const MatF& x = activations(n);
    loranull::Covariance<Cpu, Acc> cov(cpu(), n);
    for (auto _ : state) {
        cov.add(x);
        benchmark::DoNotOptimize(cov.raw_sum_lower().data());
        benchmark::ClobberMemory();
    }
    set_rank_update_counters(state, n, x.cols());
}

void BM_accumulate_ssyrk(benchmark::State& state) {
    const Idx n = state.range(0);
    const MatF& x = activations(n);
    const auto ni = static_cast<blasint>(n), ti = static_cast<blasint>(x.cols());
    MatF c = MatF::Zero(n, n);
    for (auto _ : state) {
        cblas_ssyrk(CblasColMajor, CblasLower, CblasNoTrans, ni, ti, 1.0f, x.data(), ni, 1.0f, c.data(), ni);
        benchmark::DoNotOptimize(c.data());
        benchmark::ClobberMemory();
    }
    set_rank_update_counters(state, n, x.cols());
}

void BM_accumulate_dsyrk_preconverted(benchmark::State& state) {
    const Idx n = state.range(0);
    const MatD x = activations(n).cast<double>();
    const auto ni = static_cast<blasint>(n), ti = static_cast<blasint>(x.cols());
    MatD c = MatD::Zero(n, n);
    for (auto _ : state) {
        cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, ni, ti, 1.0, x.data(), ni, 1.0, c.data(), ni);
        benchmark::DoNotOptimize(c.data());
        benchmark::ClobberMemory();
    }
    set_rank_update_counters(state, n, x.cols());
}

void BM_accumulate_eigen_general(benchmark::State& state) {
    const Idx n = state.range(0);
    const MatF& x = activations(n);
    MatF c = MatF::Zero(n, n);
    for (auto _ : state) {
        c.noalias() += x * x.transpose();
        benchmark::DoNotOptimize(c.data());
        benchmark::ClobberMemory();
    }
    set_rank_update_counters(state, n, x.cols());
}

void BM_accumulate_eigen_rank_update(benchmark::State& state) {
    const Idx n = state.range(0);
    const MatF& x = activations(n);
    MatF c = MatF::Zero(n, n);
    for (auto _ : state) {
        c.selfadjointView<Eigen::Lower>().rankUpdate(x);
        benchmark::DoNotOptimize(c.data());
        benchmark::ClobberMemory();
    }
    set_rank_update_counters(state, n, x.cols());
}

// --- 2. bottom-128 null space -------------------------------------------------

void BM_null_space(benchmark::State& state) {
    const Idx n = state.range(0);
    const MatF& c = covariance(n);
    loranull::NullSpace<Cpu, float> ns;
    for (auto _ : state) {
        ns = loranull::null_space(cpu(), c, kNullRank);
        benchmark::DoNotOptimize(ns.basis.data());
        benchmark::ClobberMemory();
    }
    const Eigen::Map<const Eigen::VectorXf> values(ns.eigenvalues.data(), ns.rank());
    const MatF residual = c * ns.basis - ns.basis * values.asDiagonal();
    state.counters["pairs"] = static_cast<double>(ns.rank());
    state.counters["residual"] = static_cast<double>(residual.norm() / c.norm());
    state.counters["energy_frac"] = ns.energy_fraction();
    // How many of the r + 1 computed eigenvalues the rank report calls zero
    // (|lambda| <= n eps ||C||_F), and whether it flags the null space as ambiguous.
    state.counters["zero_eigs"] = static_cast<double>(ns.rank_report.zero_eigenvalues_seen);
    if (ns.rank_report.deficient) state.SetLabel("rank_report:deficient");
}

void BM_smallest_eigenpairs(benchmark::State& state) {
    const Idx n = state.range(0);
    const MatF& c = covariance(n);
    for (auto _ : state) {
        auto pairs = loranull::smallest_eigenpairs(cpu(), c, kNullRank);
        benchmark::DoNotOptimize(pairs.vectors.data());
        benchmark::ClobberMemory();
    }
    state.counters["pairs"] = static_cast<double>(kNullRank);
}

void BM_ssyevd_all(benchmark::State& state) {
    const Idx n = state.range(0);
    const MatF& c = covariance(n);
    const auto ni = static_cast<lapack_int>(n);
    MatF vectors;
    std::vector<float> values(static_cast<std::size_t>(n));
    for (auto _ : state) {
        vectors = c;  // ?syevd overwrites its input (the library copies too)
        loranull::lapack::syevd<float>(ni, vectors.data(), ni, values.data());
        benchmark::DoNotOptimize(vectors.data());
        benchmark::ClobberMemory();
    }
    state.counters["pairs"] = static_cast<double>(n);
    // Do both routes find the same bottom-r subspace? (values ascending; C is PSD)
    const auto ns = loranull::null_space(cpu(), c, kNullRank);
    const double overlap = (vectors.leftCols(kNullRank).transpose() * ns.basis).squaredNorm();
    state.counters["subspace_dist"] =
        std::sqrt(std::max(0.0, static_cast<double>(kNullRank) - overlap) / static_cast<double>(kNullRank));
}

void BM_eigen_selfadjoint(benchmark::State& state) {
    const Idx n = state.range(0);
    const MatF& c = covariance(n);
    Eigen::SelfAdjointEigenSolver<MatF> solver(n);
    for (auto _ : state) {
        solver.compute(c, Eigen::ComputeEigenvectors);
        benchmark::DoNotOptimize(solver.eigenvectors().data());
        benchmark::ClobberMemory();
    }
    if (solver.info() != Eigen::Success) state.SkipWithError("SelfAdjointEigenSolver did not converge");
    state.counters["pairs"] = static_cast<double>(n);
}

// --- 3. randomized vs exact SVD -----------------------------------------------

void BM_randomized_svd(benchmark::State& state) {
    const Idx q = state.range(0);
    const MatF& a = svd_problem().a;
    const loranull::RandomizedSvdOptions options{kSvdOversampling, q, 7};
    loranull::ThinSvd<float, MatF> svd;
    for (auto _ : state) {
        svd = loranull::randomized_svd(cpu(), a, kSvdRank, options);
        benchmark::DoNotOptimize(svd.U.data());
        benchmark::ClobberMemory();
    }
    const auto [rel, worst] = singular_value_errors(svd.singular_values, exact_singular_values());
    state.counters["sv_rel_err"] = rel;
    state.counters["sv_max_rel_err"] = worst;
}

void BM_thin_svd(benchmark::State& state) {
    const MatF& a = svd_problem().a;
    loranull::ThinSvd<float, MatF> svd;
    for (auto _ : state) {
        svd = loranull::thin_svd(cpu(), a);
        benchmark::DoNotOptimize(svd.U.data());
        benchmark::ClobberMemory();
    }
    std::vector<float> top(svd.singular_values.begin(), svd.singular_values.begin() + kSvdRank);
    const auto [rel, worst] = singular_value_errors(top, svd_problem().designed);
    state.counters["sv_rel_err"] = rel;
    state.counters["sv_max_rel_err"] = worst;
}

// --- registration -------------------------------------------------------------

benchmark::internal::Benchmark* reg(const std::string& name, void (*fn)(benchmark::State&), int iters) {
    return benchmark::RegisterBenchmark(name.c_str(), fn)
        ->Iterations(iterations(iters))
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
}

void register_all() {
    // Iteration counts are sized so that the whole binary takes about 3 minutes
    // on the 2-core build machine (each n = 4096 eigensolver call is 2-4 s).
    for (const Idx n : {Idx(1024), Idx(4096)}) {
        const int it = n <= 1024 ? 20 : 5;
        reg("Accumulate/loranull_Covariance_f32acc", BM_accumulate_covariance<float>, it)->ArgName("n")->Arg(n);
        reg("Accumulate/OpenBLAS_ssyrk", BM_accumulate_ssyrk, it)->ArgName("n")->Arg(n);
        reg("Accumulate/Eigen_XXt_general", BM_accumulate_eigen_general, it)->ArgName("n")->Arg(n);
        reg("Accumulate/Eigen_rankUpdate", BM_accumulate_eigen_rank_update, it)->ArgName("n")->Arg(n);
        reg("Accumulate/loranull_Covariance_f64acc", BM_accumulate_covariance<double>, it)->ArgName("n")->Arg(n);
        reg("Accumulate/OpenBLAS_dsyrk_preconverted", BM_accumulate_dsyrk_preconverted, it)->ArgName("n")->Arg(n);
    }
    // LLaMA-7B's MLP width (the down_proj input): where a general product hurts most.
    {
        const Idx n = 11008;
        reg("Accumulate/loranull_Covariance_f32acc", BM_accumulate_covariance<float>, 2)->ArgName("n")->Arg(n);
        reg("Accumulate/OpenBLAS_ssyrk", BM_accumulate_ssyrk, 2)->ArgName("n")->Arg(n);
        reg("Accumulate/Eigen_XXt_general", BM_accumulate_eigen_general, 1)->ArgName("n")->Arg(n);
    }
    const bool slow = env_flag("LORANULL_BENCH_SLOW");
    for (const Idx n : {Idx(1024), Idx(2048), Idx(4096)}) {
        const int it = n <= 1024 ? 10 : n <= 2048 ? 5 : 3;
        reg("NullSpace128/loranull_null_space", BM_null_space, it)->ArgName("n")->Arg(n);
        reg("NullSpace128/loranull_smallest_eigenpairs", BM_smallest_eigenpairs, it)->ArgName("n")->Arg(n);
        reg("NullSpace128/LAPACKE_ssyevd_all", BM_ssyevd_all, it)->ArgName("n")->Arg(n);
        if (n <= 2048 || slow)
            reg("NullSpace128/Eigen_SelfAdjointEigenSolver_all", BM_eigen_selfadjoint, n <= 1024 ? 3 : n <= 2048 ? 2 : 1)
                ->ArgName("n")
                ->Arg(n);
    }
    reg("Svd4096x1024/loranull_randomized_svd_k128_p10", BM_randomized_svd, 20)->ArgName("q")->Arg(0);
    reg("Svd4096x1024/loranull_randomized_svd_k128_p10", BM_randomized_svd, 10)->ArgName("q")->Arg(2);
    reg("Svd4096x1024/loranull_thin_svd_gesdd", BM_thin_svd, 5);
}

void add_context() {
    auto env_or = [](const char* name) {
        const char* value = std::getenv(name);
        return std::string(value != nullptr ? value : "(unset)");
    };
    benchmark::AddCustomContext("openblas_config", openblas_get_config());
    benchmark::AddCustomContext("openblas_corename", openblas_get_corename());
    benchmark::AddCustomContext("openblas_threads", std::to_string(openblas_get_num_threads()));
    benchmark::AddCustomContext("OPENBLAS_CORETYPE", env_or("OPENBLAS_CORETYPE"));
    benchmark::AddCustomContext("OPENBLAS_L2_SIZE", env_or("OPENBLAS_L2_SIZE"));
    benchmark::AddCustomContext("eigen_threads", std::to_string(Eigen::nbThreads()));
    benchmark::AddCustomContext("eigen_simd", Eigen::SimdInstructionSetsInUse());
    benchmark::AddCustomContext("LORANULL_BENCH_SLOW", env_flag("LORANULL_BENCH_SLOW") ? "1" : "0");
    benchmark::AddCustomContext("LORANULL_BENCH_QUICK", env_flag("LORANULL_BENCH_QUICK") ? "1" : "0");
}

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    add_context();
    register_all();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
