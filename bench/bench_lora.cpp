// bench_lora: the cost of initialising one layer, each method next to its peer.
//
//   LoraNullInit/*   LoRA-Null init of W (m x n, float), r = 128, covariance C
//                    (n x n) given, for the 4096 x 4096 (q/k/v/o) and 11008 x 4096
//                    (gate/up) shapes of LLaMA-2-7B:
//                      loranull_thin     lora_null(cpu, W, C, r): bottom-129
//                                        eigenpairs (?syevr), M = W U (m x r), its
//                                        thin SVD, W_res = W - s B A
//                      reference_route   what the official code does, on the same
//                                        backend: full SVD of C (?gesdd), P = U_r U_r^T
//                                        (n x n), W P (m x n), full thin SVD of W P
//                                        (?gesdd), top r
//   PissaInit/*      PiSSA on the same shapes: exact (thin SVD of W, ?gesdd) vs fast
//                    (randomized SVD, q = 4 power iterations, oversampling 10).
//
// Target: loranull_thin >= 10x faster than reference_route on the CPU.
// bench/pytorch_init.py times the reference route in PyTorch on the same shapes.
// Each case runs once (->Iterations(1)): they take seconds, not microseconds.
//
//   cmake --build build --target bench_lora && build/bench/bench_lora
//   LORANULL_BENCH_QUICK=1 build/bench/bench_lora    # 1024 x 1024 only: a smoke test

#include <cstdlib>
#include <map>
#include <string_view>
#include <utility>

#include <benchmark/benchmark.h>

#include "loranull/backend/cpu/cpu_backend.hpp"
#include "loranull/core/random.hpp"
#include "loranull/lora/initialisers.hpp"

namespace {

using namespace loranull;
using Mat = CpuBackend::Matrix<float>;
constexpr Index kRank = 128;

CpuBackend& cpu() {
    static CpuBackend backend;
    return backend;
}

bool quick() {
    const char* value = std::getenv("LORANULL_BENCH_QUICK");
    return value != nullptr && *value != '\0' && std::string_view(value) != "0";
}

/// A weight with a weight-like singular spectrum (sigma_i ~ (1 + i)^-1/2).
const Mat& weight(Index m, Index n) {
    static std::map<std::pair<Index, Index>, Mat> cache;
    auto& w = cache[{m, n}];
    if (w.size() == 0) {
        Rng rng(m * 7 + n);
        w = cpu().upload(random_normal<float>(m, n, rng, 1.0 / std::sqrt(double(n))));
    }
    return w;
}

/// A covariance X X^T / T of 2n tokens with rows scaled 1 .. 1e-2 (eigenvalues
/// over four decades, full rank, as real activations give).
const Mat& covariance(Index n) {
    static std::map<Index, Mat> cache;
    auto& c = cache[n];
    if (c.size() == 0) {
        Rng rng(n);
        Mat x = cpu().upload(random_normal<float>(n, 2 * n, rng));
        for (Index i = 0; i < n; ++i) x.row(i) *= static_cast<float>(std::pow(1e-2, double(i) / double(n - 1)));
        const Mat q = cpu().thin_q(cpu().upload(random_normal<float>(n, n, rng)));
        x = q * x;
        c = Mat::Zero(n, n);
        cpu().syrk_lower(1.0f / float(2 * n), x, c);
        cpu().symmetrize_lower(c);
    }
    return c;
}

void set_shape_label(benchmark::State& state, Index m, Index n) {
    state.SetLabel(std::to_string(m) + "x" + std::to_string(n) + " r=" + std::to_string(kRank));
}

void loranull_thin(benchmark::State& state) {
    const Index m = state.range(0), n = state.range(1);
    const Mat& w = weight(m, n);
    const Mat& c = covariance(n);
    for (auto _ : state) {
        auto f = lora_null(cpu(), w, c, LoraConfig{kRank});
        benchmark::DoNotOptimize(f.A.data());
    }
    set_shape_label(state, m, n);
}

void reference_route(benchmark::State& state) {
    const Index m = state.range(0), n = state.range(1);
    const Mat& w = weight(m, n);
    const Mat& c = covariance(n);
    for (auto _ : state) {
        const auto svd_c = cpu().thin_svd(c);                             // full SVD of C, descending
        const Mat u = svd_c.U.rightCols(kRank);                           // the r smallest
        const Mat p = product(cpu(), u, u, Op::none, Op::transpose);      // n x n projector
        const Mat wp = product(cpu(), w, p);                              // m x n
        const auto svd = truncated_svd(cpu(), wp, kRank);                 // full m x n SVD, top r
        benchmark::DoNotOptimize(svd.U.data());
    }
    set_shape_label(state, m, n);
}

void pissa_exact(benchmark::State& state) {
    const Index m = state.range(0), n = state.range(1);
    for (auto _ : state) {
        auto f = pissa(cpu(), weight(m, n), LoraConfig{kRank});
        benchmark::DoNotOptimize(f.A.data());
    }
    set_shape_label(state, m, n);
}

void pissa_fast_q4(benchmark::State& state) {
    const Index m = state.range(0), n = state.range(1);
    for (auto _ : state) {
        auto f = pissa_fast(cpu(), weight(m, n), LoraConfig{kRank}, 4);
        benchmark::DoNotOptimize(f.A.data());
    }
    set_shape_label(state, m, n);
}

void shapes(benchmark::internal::Benchmark* b) {
    if (quick()) {
        b->Args({1024, 1024});
    } else {
        b->Args({4096, 4096});
        b->Args({11008, 4096});
    }
    b->ArgNames({"m", "n"})->Iterations(1)->Unit(benchmark::kSecond)->UseRealTime();
}

}  // namespace

BENCHMARK(loranull_thin)->Name("LoraNullInit/loranull_thin")->Apply(shapes);
BENCHMARK(reference_route)->Name("LoraNullInit/reference_route")->Apply(shapes);
BENCHMARK(pissa_fast_q4)->Name("PissaInit/fast_q4")->Apply(shapes);
BENCHMARK(pissa_exact)->Name("PissaInit/exact")->Apply(shapes);

BENCHMARK_MAIN();
