// The floors of a loranull-build run (bench/bench_build.sh): what each part
// would take if it ran only its essential BLAS/LAPACK calls, straight to
// OpenBLAS, on the run's own shapes:
//
//   forward        ?sgemm of every projection of a chunk (q/k/v as one
//                  product, o, gate/up as one, down: T = batch x seq tokens)
//                  and of attention (per sequence and kv head: K^T [Q_h..],
//                  V P), times chunks x blocks
//   covariance     ?ssyrk (and ?dsyrk) of each of the 4 inputs' chunk panels,
//                  times chunks x blocks
//   decomposition  ?dsyevr of the bottom r + 1 pairs of each input's n x n
//                  covariance, and LoRA-Null's thin path per projection in
//                  double (?dgemm M = W U, ?dgesdd of M, ?dgemm W - s B A),
//                  times blocks
//
// Each call is timed as the minimum of 3 after a warm-up. Prints
// "name seconds gflop" lines.
//
//   build_floors MODEL_DIR --samples S --seq-len T --batch B --rank R
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include <loranull/loranull.hpp>

using namespace loranull;
using Clock = std::chrono::steady_clock;

namespace {

double best_of_3(const std::function<void()>& call) {
    call();  // warm-up
    double best = 1e30;
    for (int k = 0; k < 3; ++k) {
        const auto t = Clock::now();
        call();
        best = std::min(best, std::chrono::duration<double>(Clock::now() - t).count());
    }
    return best;
}

template <class T>
std::vector<T> random_values(std::size_t count, unsigned seed) {
    std::vector<T> v(count);
    std::srand(seed);
    for (auto& x : v) x = T(std::rand()) / T(RAND_MAX) - T(0.5);
    return v;
}

/// Seconds of C (m x n) = A (m x k) B (k x n), float.
double sgemm_seconds(lapack_int m, lapack_int n, lapack_int k, bool transpose_a = false) {
    const auto a = random_values<float>(std::size_t(m) * k, 1), b = random_values<float>(std::size_t(k) * n, 2);
    std::vector<float> c(std::size_t(m) * n);
    return best_of_3([&] {
        lapack::gemm<float>(transpose_a, false, m, n, k, 1.0f, a.data(), transpose_a ? k : m, b.data(), k, 0.0f,
                            c.data(), m);
    });
}

template <class T>
double syrk_seconds(lapack_int n, lapack_int k) {
    const auto x = random_values<T>(std::size_t(n) * k, 3);
    std::vector<T> c(std::size_t(n) * n);
    return best_of_3([&] { lapack::syrk_lower<T>(n, k, T(1), x.data(), n, c.data(), n, T(0)); });
}

double dgemm_seconds(lapack_int m, lapack_int n, lapack_int k) {
    const auto a = random_values<double>(std::size_t(m) * k, 5), b = random_values<double>(std::size_t(k) * n, 6);
    std::vector<double> c(std::size_t(m) * n);
    return best_of_3([&] { lapack::gemm<double>(false, false, m, n, k, 1.0, a.data(), m, b.data(), k, 0.0, c.data(), m); });
}

double gesdd_seconds(lapack_int m, lapack_int n) {
    const auto a = random_values<double>(std::size_t(m) * n, 7);
    const lapack_int p = std::min(m, n);
    std::vector<double> work, s(static_cast<std::size_t>(p)), u(static_cast<std::size_t>(m * p)),
        vt(static_cast<std::size_t>(p * n));
    return best_of_3([&] {
        work = a;
        lapack::gesdd<double>(m, n, work.data(), m, s.data(), u.data(), m, vt.data(), p);
    });
}

double syevr_seconds(lapack_int n, lapack_int pairs) {
    const lapack_int k = 2 * n;
    const auto x = random_values<double>(std::size_t(n) * k, 4);
    std::vector<double> c(static_cast<std::size_t>(n * n)), a, w(static_cast<std::size_t>(n)),
        z(static_cast<std::size_t>(n * pairs));
    lapack::syrk_lower<double>(n, k, 1.0 / k, x.data(), n, c.data(), n, 0.0);
    return best_of_3([&] {
        a = c;
        lapack::syevr<double>(n, a.data(), n, 1, pairs, w.data(), z.data(), n);
    });
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: build_floors MODEL_DIR --samples S --seq-len T --batch B --rank R\n");
        return 2;
    }
    Index samples = 32, seq = 512, batch = 8, rank = 128;
    for (int i = 2; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        const Index v = std::atol(argv[i + 1]);
        if (a == "--samples") samples = v;
        else if (a == "--seq-len") seq = v;
        else if (a == "--batch") batch = v;
        else if (a == "--rank") rank = v;
    }
    io::HfCheckpointReader checkpoint(argv[1]);
    const LlamaConfig c = checkpoint.config();
    const Index chunks = (samples + batch - 1) / batch, tokens = batch * seq, blocks = c.n_layers;
    const Index d = c.dim, h = c.hidden_dim, q = c.q_dim(), kv = c.kv_dim(), hd = c.head_dim();
    const Index group = c.n_heads / c.n_kv_heads;
    const auto li = [](Index v) { return static_cast<lapack_int>(v); };

    // Forward: the projections of one chunk, then attention per sequence and kv head.
    const double projections = sgemm_seconds(li(q + 2 * kv), li(tokens), li(d)) + sgemm_seconds(li(d), li(tokens), li(q)) +
                               sgemm_seconds(li(2 * h), li(tokens), li(d)) + sgemm_seconds(li(d), li(tokens), li(h));
    const double attention = double(batch * c.n_kv_heads) * (sgemm_seconds(li(seq), li(group * seq), li(hd), true) +
                                                             sgemm_seconds(li(hd), li(group * seq), li(seq)));
    const double projection_flops = 2.0 * double(tokens) * double(d * (q + 2 * kv) + d * q + 2 * h * d + d * h);
    const double attention_flops = 2.0 * 2.0 * double(batch) * double(c.n_heads) * double(seq) * double(seq) * double(hd);
    const double scale = double(chunks * blocks);
    std::printf("forward_projections %.3f %.1f\n", projections * scale, projection_flops * scale / 1e9);
    std::printf("forward_attention %.3f %.1f\n", attention * scale, attention_flops * scale / 1e9);

    // Covariances: the four inputs' panels of one chunk.
    double ssyrk = 0, dsyrk = 0, syrk_flops = 0;
    for (Index n : {d, q, d, h}) {  // attn_in, o_in, mlp_in, down_in
        ssyrk += syrk_seconds<float>(li(n), li(tokens));
        dsyrk += syrk_seconds<double>(li(n), li(tokens));
        syrk_flops += double(n) * double(n) * double(tokens);
    }
    std::printf("covariance_ssyrk %.3f %.1f\n", ssyrk * scale, syrk_flops * scale / 1e9);
    std::printf("covariance_dsyrk %.3f %.1f\n", dsyrk * scale, syrk_flops * scale / 1e9);

    // Null spaces: bottom r + 1 pairs of each input's covariance.
    double syevr = 0;
    for (Index n : {d, q, d, h}) syevr += syevr_seconds(li(n), li(std::min(rank + 1, n)));
    std::printf("decomposition_syevr %.3f 0\n", syevr * double(blocks));

    // LoRA-Null's thin path per projection, in double: M = W U (m x n x r),
    // the SVD of M (m x r), W_res = W - s B A (m x r x n).
    double thin = 0, thin_flops = 0;
    for (auto [m, n] : {std::pair<Index, Index>{q, d}, {kv, d}, {kv, d}, {d, q}, {h, d}, {h, d}, {d, h}}) {
        thin += dgemm_seconds(li(m), li(rank), li(n)) + dgemm_seconds(li(m), li(n), li(rank)) + gesdd_seconds(li(m), li(rank));
        thin_flops += 4.0 * double(m) * double(n) * double(rank);
    }
    std::printf("decomposition_thin_path %.3f %.1f\n", thin * double(blocks), thin_flops * double(blocks) / 1e9);
}
