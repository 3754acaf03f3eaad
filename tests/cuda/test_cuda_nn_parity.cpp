// CPU-vs-GPU parity of every neural-network kernel (NnBackend, backend/nn.hpp):
// the CPU kernels (backend/cpu/nn_kernels.hpp) are the oracle, the GPU half is
// gpu_nn_ops.hpp. Random inputs drawn on the host (loranull::Rng), float and
// double, grouped-query attention (4 query heads on 2 kv heads, and 3 on 1),
// sequence lengths that are not multiples of a warp (13, and 150, longer than
// any block), batch 2, plus the degenerate seq_len 1.
//
// Tolerances, relative Frobenius errors ||G - C|| / ||C||:
//   * exact (==) where the GPU performs the same roundings in the same order:
//     the embedding gather, the embedding backward (positions added in token
//     order, as the CPU's loop adds them), the cross-entropy backward
//     (p / T, then - 1 / T);
//   * otherwise tol(k) = 4 (k + 2) sqrt(k) eps(T), k the number of terms in the
//     longest chain of sums that produces an entry (stated per check):
//     4 (k + 2) eps is the classic bound relative to the norm of the terms
//     (the convention of test_cuda_parity.cpp), and sqrt(k) allows for the
//     cancellation of k random-sign terms, which makes the result's norm that
//     much smaller than its terms' on these Gaussian inputs. Differences come
//     from the summation order, nvcc's FMA contraction and CUDA's exp/log
//     (<= 2 ulp). Any indexing or layout mistake gives O(1) errors; any float
//     rounding leaking into a double path gives ~1e-7, far above tol in double.
//
// Without a CUDA device every case is skipped (gpu_test.hpp). The same file,
// linked with nn_host_emulation.cu instead of gpu_nn_ops.cu, runs everywhere
// as test_cuda_nn_emulated: the GPU kernels' functors executed by a host loop.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "../test_util.hpp"
#include "gpu_nn_ops.hpp"
#include "gpu_test.hpp"

using namespace loranull;
using gpu_test::requires_gpu;
using test::Mat;
using Tokens = std::vector<std::int32_t>;

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
HostMatrix<T> gaussian(Index rows, Index cols, std::uint64_t seed, double stddev = 1.0) {
    Rng rng(seed);
    return random_normal<T>(rows, cols, rng, stddev);
}

/// 4 (k + 2) sqrt(k) eps(T): see the file comment.
template <class T>
double tol(double k) {
    return 4.0 * (k + 2.0) * std::sqrt(k) * std::numeric_limits<T>::epsilon();
}

template <class T>
double gpu_error(const HostMatrix<T>& gpu_result, const Mat<T>& cpu_result) {
    REQUIRE(gpu_result.rows() == cpu_result.rows());
    REQUIRE(gpu_result.cols() == cpu_result.cols());
    return test::relative_error(mat(gpu_result), cpu_result);
}

Tokens random_tokens(Index count, Index vocab, std::uint64_t seed) {
    Rng rng(seed);
    Tokens t(static_cast<std::size_t>(count));
    for (auto& x : t) x = static_cast<std::int32_t>(rng.next_u64() % static_cast<std::uint64_t>(vocab));
    return t;
}

}  // namespace

TEST_CASE_TEMPLATE("NN kernels: embedding gather and its scatter-add backward are exact" * requires_gpu(), T, float,
                   double) {
    for (Index vocab : {Index(1), Index(7), Index(300)}) {
        CAPTURE(vocab);
        const Index d = 5, count = 26;
        const Tokens tokens = random_tokens(count, vocab, 10 + vocab);  // repeats: several tokens per id
        const HostMatrix<T> table = gaussian<T>(d, vocab, 1), dx = gaussian<T>(d, count, 2);
        const HostMatrix<T> d_table = gaussian<T>(d, vocab, 3);  // accumulated into, not overwritten
        CHECK(gpu::nn::embedding_forward(table, tokens) == host(cpu.embedding_forward(mat(table), tokens)));
        Mat<T> expected = mat(d_table);
        cpu.embedding_backward(expected, mat(dx), tokens);
        CHECK(gpu::nn::embedding_backward(d_table, dx, tokens) == host(expected));
    }
}

TEST_CASE_TEMPLATE("NN kernels: RMSNorm forward (rstd saved) and backward (dg accumulated)" * requires_gpu(), T, float,
                   double) {
    for (Index d : {Index(7), Index(200)}) {
        CAPTURE(d);
        const Index tokens = 26;
        const HostMatrix<T> x = gaussian<T>(d, tokens, 4), dy = gaussian<T>(d, tokens, 6);
        HostMatrix<T> gain = gaussian<T>(d, 1, 5, 0.3);
        for (Index i = 0; i < d; ++i) gain(i, 0) += T(1);
        const HostMatrix<T> d_gain = gaussian<T>(d, 1, 7);
        const T eps = T(1e-5);
        Mat<T> rstd;
        const Mat<T> y = cpu.rmsnorm_forward(mat(x), mat(gain), eps, rstd);
        const auto g = gpu::nn::rmsnorm_forward(x, gain, eps);
        CHECK(gpu_error(g.y, y) < tol<T>(d));
        CHECK(gpu_error(g.rstd, rstd) < tol<T>(d));
        Mat<T> expected_gain = mat(d_gain);
        const Mat<T> dx = cpu.rmsnorm_backward(mat(dy), mat(x), mat(gain), rstd, expected_gain);
        const auto gb = gpu::nn::rmsnorm_backward(dy, x, gain, host(rstd), d_gain);  // the CPU's rstd: one input
        CHECK(gpu_error(gb.dx, dx) < tol<T>(d));
        CHECK(gpu_error(gb.d_gain, expected_gain) < tol<T>(tokens + 1));
    }
}

TEST_CASE_TEMPLATE("NN kernels: RoPE (HF rotate-half) and its inverse" * requires_gpu(), T, float, double) {
    struct Shape {
        Index heads, head_dim, seq, batch;
    };
    for (Shape s : {Shape{4, 8, 13, 2}, Shape{2, 6, 150, 2}, Shape{1, 2, 1, 3}}) {
        CAPTURE(s.heads);
        CAPTURE(s.head_dim);
        CAPTURE(s.seq);
        const HostMatrix<T> x = gaussian<T>(s.heads * s.head_dim, s.seq * s.batch, 8);
        for (int direction : {1, -1}) {
            CAPTURE(direction);
            Mat<T> expected = mat(x);
            cpu.rope(expected, s.heads, s.head_dim, s.seq, 10000.0, direction);
            CHECK(gpu_error(gpu::nn::rope(x, s.heads, s.head_dim, s.seq, 10000.0, direction), expected) < tol<T>(2));
        }
        // theta of Llama 3 (500000): other angles, same code path
        Mat<T> expected = mat(x);
        cpu.rope(expected, s.heads, s.head_dim, s.seq, 500000.0, 1);
        CHECK(gpu_error(gpu::nn::rope(x, s.heads, s.head_dim, s.seq, 500000.0, 1), expected) < tol<T>(2));
    }
}

TEST_CASE_TEMPLATE("NN kernels: causal grouped-query attention forward (probs saved) and backward" * requires_gpu(), T,
                   float, double) {
    struct Case {
        AttentionShape shape;
        Index batch;
    };
    for (Case c : {Case{{4, 2, 8, 13}, 2}, Case{{3, 1, 10, 150}, 2}, Case{{2, 2, 4, 1}, 3}, Case{{4, 4, 6, 5}, 1}}) {
        const AttentionShape& a = c.shape;
        CAPTURE(a.heads);
        CAPTURE(a.kv_heads);
        CAPTURE(a.head_dim);
        CAPTURE(a.seq_len);
        const Index tokens = a.seq_len * c.batch;
        const HostMatrix<T> q = gaussian<T>(a.heads * a.head_dim, tokens, 9);
        const HostMatrix<T> k = gaussian<T>(a.kv_heads * a.head_dim, tokens, 10);
        const HostMatrix<T> v = gaussian<T>(a.kv_heads * a.head_dim, tokens, 11);
        const HostMatrix<T> d_out = gaussian<T>(a.heads * a.head_dim, tokens, 12);
        Mat<T> probs;
        const Mat<T> out = cpu.attention_forward(mat(q), mat(k), mat(v), a, probs);
        const auto g = gpu::nn::attention_forward(q, k, v, a);
        const double hd = double(a.head_dim), s = double(a.seq_len), group = double(a.heads / a.kv_heads);
        CHECK(gpu_error(g.probs, probs) < tol<T>(hd + s));
        CHECK(gpu_error(g.out, out) < tol<T>(hd + 2 * s));
        // Causality, exactly: keys after the query have probability 0.
        bool causal = true;
        for (Index col = 0; col < g.probs.cols(); ++col)
            for (Index key = col % a.seq_len + 1; key < a.seq_len; ++key) causal = causal && g.probs(key, col) == T(0);
        CHECK(causal);
        Mat<T> dq, dk, dv;
        cpu.attention_backward(mat(d_out), mat(q), mat(k), mat(v), probs, a, dq, dk, dv);
        const auto gb = gpu::nn::attention_backward(d_out, q, k, v, host(probs), a);  // the CPU's probs: one input
        CHECK(gpu_error(gb.dq, dq) < tol<T>(hd + 2 * s));
        CHECK(gpu_error(gb.dk, dk) < tol<T>(hd + (1 + group) * s));
        CHECK(gpu_error(gb.dv, dv) < tol<T>(group * s));
    }
}

TEST_CASE_TEMPLATE("NN kernels: SwiGLU forward and backward" * requires_gpu(), T, float, double) {
    const HostMatrix<T> gate = gaussian<T>(37, 26, 13, 2.0), up = gaussian<T>(37, 26, 14), dh = gaussian<T>(37, 26, 15);
    CHECK(gpu_error(gpu::nn::swiglu_forward(gate, up), cpu.swiglu_forward(mat(gate), mat(up))) < tol<T>(4));
    Mat<T> d_gate, d_up;
    cpu.swiglu_backward(mat(dh), mat(gate), mat(up), d_gate, d_up);
    const auto g = gpu::nn::swiglu_backward(dh, gate, up);
    CHECK(gpu_error(g.d_gate, d_gate) < tol<T>(4));
    CHECK(gpu_error(g.d_up, d_up) < tol<T>(4));
}

TEST_CASE_TEMPLATE("NN kernels: cross-entropy (stable softmax, mean loss in double, ignored targets) and its exact backward" *
                       requires_gpu(),
                   T, float, double) {
    for (Index vocab : {Index(5), Index(300)}) {
        CAPTURE(vocab);
        const Index tokens = 26;
        HostMatrix<T> logits = gaussian<T>(vocab, tokens, 16, 3.0);
        logits(0, 0) = T(80);  // exp(80) overflows float: the max must be subtracted first
        Tokens targets = random_tokens(tokens, vocab, 17);
        targets[3] = targets[20] = loranull::ignore_target;  // not scored: mean over 24, zero gradient columns
        Mat<T> probs;
        const double loss = cpu.cross_entropy_forward(mat(logits), targets, probs);
        const auto g = gpu::nn::cross_entropy_forward(logits, targets);
        CHECK(std::isfinite(g.loss));
        CHECK(std::abs(g.loss - loss) / std::abs(loss) < tol<T>(double(vocab + tokens)));
        CHECK(gpu_error(g.probs, probs) < tol<T>(double(vocab)));
        CHECK(gpu::nn::cross_entropy_backward(host(probs), targets) ==
              host(cpu.cross_entropy_backward(probs, targets)));
    }
}

TEST_CASE_TEMPLATE("NN kernels: AdamW update (bias correction, decoupled weight decay)" * requires_gpu(), T, float,
                   double) {
    const Index rows = 33, cols = 7;
    gpu::nn::AdamWState<T> state{gaussian<T>(rows, cols, 18), gaussian<T>(rows, cols, 19, 0.1),
                                 gaussian<T>(rows, cols, 20, 0.01)};
    for (Index i = 0; i < state.v.size(); ++i) state.v.data()[i] = std::abs(state.v.data()[i]);  // v >= 0
    const HostMatrix<T> grad = gaussian<T>(rows, cols, 21, 0.1);
    for (long step : {1L, 2L, 1000L}) {
        CAPTURE(step);
        Mat<T> param = mat(state.param), m = mat(state.m), v = mat(state.v);
        cpu.adamw_update(param, mat(grad), m, v, 1e-3, 0.9, 0.999, 1e-8, 0.1, step);
        const auto g = gpu::nn::adamw_update(state, grad, 1e-3, 0.9, 0.999, 1e-8, 0.1, step);
        CHECK(gpu_error(g.m, m) < tol<T>(2));
        CHECK(gpu_error(g.v, v) < tol<T>(2));
        CHECK(gpu_error(g.param, param) < tol<T>(8));
    }
}
