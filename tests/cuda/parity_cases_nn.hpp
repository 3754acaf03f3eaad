#pragma once
// Parity cases, part 4: every neural-network kernel of NnBackend (backend/nn.hpp),
// forward and backward, in float and double, on random inputs: grouped-query
// attention (4 query heads on 2 kv heads, and 3 on 1), sequence lengths that
// are not multiples of a warp (13, and 150, longer than any block), batch 2,
// plus the degenerate seq_len 1. Only the NnBackend kernels and upload /
// download / zeros are used, so these cases also run on the host emulation of
// the GPU kernels (test_cuda_nn_emulated).
//
// Tolerances, relative Frobenius errors ||G - C|| / ||C||:
//   * exact (==) where the GPU performs the same roundings in the same order:
//     the embedding gather, the embedding backward (positions added in token
//     order, as the CPU's loop adds them), the cross-entropy backward
//     (p / T, then - 1 / T);
//   * otherwise tol(k) = 4 (k + 2) sqrt(k) eps(T), k the number of terms in the
//     longest chain of sums that produces an entry (stated per check):
//     4 (k + 2) eps is the classic bound relative to the norm of the terms
//     (the convention of the linear-algebra cases), and sqrt(k) allows for the
//     cancellation of k random-sign terms, which makes the result's norm that
//     much smaller than its terms' on these Gaussian inputs. Differences come
//     from the summation order, nvcc's FMA contraction and CUDA's exp/log
//     (<= 2 ulp). Any indexing or layout mistake gives O(1) errors; any float
//     rounding leaking into a double path gives ~1e-7, far above tol in double.
//
// Backward inputs that a forward produces (rstd, probs) are the CPU's, made in
// items(): one input for both backends.

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <loranull/backend/nn.hpp>
#include <loranull/llama/rope.hpp>

#include "parity_cases_primitives.hpp"

namespace parity {

using loranull::AttentionShape;

/// 4 (k + 2) sqrt(k) eps(T): see the file comment.
template <class T>
double nn_tol(double k) {
    return 4.0 * (k + 2.0) * std::sqrt(k) * eps<T>();
}

struct Embedding {
    static constexpr const char* title = "NN kernels: embedding gather and its scatter-add backward are exact";
    template <class T>
    struct Item {
        std::string label;
        Tokens tokens;                    // 26 ids, repeats: several tokens per id
        HostMatrix<T> table, dx, d_table;  // d x vocab, d x 26, d x vocab (accumulated into)
    };
    template <class T>
    struct Result {
        HostMatrix<T> x, d_table;
    };
    template <class T, class Bk>
    static std::vector<Item<T>> items(Bk&) {
        std::vector<Item<T>> out;
        for (Index vocab : {Index(1), Index(7), Index(300)})
            out.push_back({"vocab " + std::to_string(vocab), random_tokens(26, vocab, 10 + vocab),
                           gaussian<T>(5, vocab, 1), gaussian<T>(5, 26, 2), gaussian<T>(5, vocab, 3)});
        return out;
    }
    template <class T, class Bk>
    static Result<T> run(Bk& b, const Item<T>& in) {
        auto d_table = b.upload(in.d_table);
        b.embedding_backward(d_table, b.upload(in.dx), in.tokens);
        return {b.download(b.embedding_forward(b.upload(in.table), in.tokens)), b.download(d_table)};
    }
    template <class T, class Check>
    static void check(Check& c, const Item<T>&, const Result<T>& got, const Result<T>& expected) {
        c.that("gather", got.x == expected.x);
        c.that("scatter-add", got.d_table == expected.d_table);
    }
};

struct Rmsnorm {
    static constexpr const char* title = "NN kernels: RMSNorm forward (rstd saved) and backward (dg accumulated)";
    template <class T>
    struct Item {
        std::string label;
        HostMatrix<T> x, dy, gain, d_gain, rstd;  // d x 26, d x 26, d x 1 (~1), d x 1, 1 x 26 (the CPU's)
        T eps;
    };
    template <class T>
    struct Result {
        HostMatrix<T> y, rstd, dx, d_gain;
    };
    template <class T, class Bk>
    static std::vector<Item<T>> items(Bk& b) {
        std::vector<Item<T>> out;
        for (Index d : {Index(7), Index(200)}) {
            Item<T> item{"d " + std::to_string(d), gaussian<T>(d, 26, 4), gaussian<T>(d, 26, 6),
                         gaussian<T>(d, 1, 5, 0.3), gaussian<T>(d, 1, 7), {}, T(1e-5)};
            for (Index i = 0; i < d; ++i) item.gain(i, 0) += T(1);
            typename Bk::template Matrix<T> rstd;
            (void)b.rmsnorm_forward(b.upload(item.x), b.upload(item.gain), item.eps, rstd);
            item.rstd = b.download(rstd);
            out.push_back(item);
        }
        return out;
    }
    template <class T, class Bk>
    static Result<T> run(Bk& b, const Item<T>& in) {
        typename Bk::template Matrix<T> rstd;  // empty: the kernel allocates it
        const auto y = b.rmsnorm_forward(b.upload(in.x), b.upload(in.gain), in.eps, rstd);
        auto d_gain = b.upload(in.d_gain);
        const auto dx = b.rmsnorm_backward(b.upload(in.dy), b.upload(in.x), b.upload(in.gain), b.upload(in.rstd), d_gain);
        return {b.download(y), b.download(rstd), b.download(dx), b.download(d_gain)};
    }
    template <class T, class Check>
    static void check(Check& c, const Item<T>& in, const Result<T>& got, const Result<T>& expected) {
        const double d = double(in.x.rows());
        c.below("y", c.relative(got.y, expected.y), nn_tol<T>(d));
        c.below("rstd", c.relative(got.rstd, expected.rstd), nn_tol<T>(d));
        c.below("dx", c.relative(got.dx, expected.dx), nn_tol<T>(d));
        c.below("d_gain", c.relative(got.d_gain, expected.d_gain), nn_tol<T>(double(in.x.cols()) + 1));
    }
};

struct Rope {
    static constexpr const char* title = "NN kernels: RoPE (HF rotate-half) and its inverse";
    template <class T>
    struct Item {
        std::string label;
        HostMatrix<T> x;  // (heads hd) x (seq batch)
        Index heads, head_dim, seq;
    };
    template <class T>
    struct Result {
        HostMatrix<T> forward, inverse, llama3, scaled;  // direction 1, -1, theta 500000 (Llama 3), llama3 scaling
    };
    template <class T, class Bk>
    static std::vector<Item<T>> items(Bk&) {
        std::vector<Item<T>> out;
        struct Shape {
            Index heads, head_dim, seq, batch;
        };
        for (Shape s : {Shape{4, 8, 13, 2}, Shape{2, 6, 150, 2}, Shape{1, 2, 1, 3}})
            out.push_back({std::to_string(s.heads) + " heads of " + std::to_string(s.head_dim) + ", seq " +
                               std::to_string(s.seq),
                           gaussian<T>(s.heads * s.head_dim, s.seq * s.batch, 8), s.heads, s.head_dim, s.seq});
        return out;
    }
    template <class T, class Bk>
    static Result<T> run(Bk& b, const Item<T>& in) {
        const auto rotated = [&](const std::vector<double>& frequencies, int direction) {
            auto x = b.upload(in.x);
            b.rope(x, in.heads, in.head_dim, in.seq, frequencies, direction);
            return b.download(x);
        };
        loranull::LlamaConfig llama31;  // Llama 3.1's frequency bands, at this head size
        llama31.dim = in.heads * in.head_dim;
        llama31.n_heads = in.heads;
        llama31.n_kv_heads = in.heads;
        llama31.rope_theta = 500000;
        llama31.rope_scaling = {loranull::RopeScaling::Type::llama3, 8.0, 1.0, 4.0, 64};
        const auto plain = loranull::rope_frequencies(10000.0, in.head_dim);
        return {rotated(plain, 1), rotated(plain, -1), rotated(loranull::rope_frequencies(500000.0, in.head_dim), 1),
                rotated(loranull::rope_frequencies(llama31), 1)};
    }
    template <class T, class Check>
    static void check(Check& c, const Item<T>&, const Result<T>& got, const Result<T>& expected) {
        c.below("forward", c.relative(got.forward, expected.forward), nn_tol<T>(2));
        c.below("inverse", c.relative(got.inverse, expected.inverse), nn_tol<T>(2));
        c.below("theta 500000", c.relative(got.llama3, expected.llama3), nn_tol<T>(2));
        c.below("llama3 scaling", c.relative(got.scaled, expected.scaled), nn_tol<T>(2));
    }
};

struct Attention {
    static constexpr const char* title = "NN kernels: causal grouped-query attention forward (probs saved) and backward";
    template <class T>
    struct Item {
        std::string label;
        AttentionShape shape;
        HostMatrix<T> q, k, v, d_out, probs;  // probs: the CPU's forward, the backward's input
    };
    template <class T>
    struct Result {
        HostMatrix<T> out, probs, dq, dk, dv;
    };
    template <class T, class Bk>
    static std::vector<Item<T>> items(Bk& b) {
        std::vector<Item<T>> out;
        struct Case {
            AttentionShape shape;
            Index batch;
        };
        for (Case c : {Case{{4, 2, 8, 13}, 2}, Case{{3, 1, 10, 150}, 2}, Case{{2, 2, 4, 1}, 3}, Case{{4, 4, 6, 5}, 1}}) {
            const AttentionShape& a = c.shape;
            const Index tokens = a.seq_len * c.batch;
            Item<T> item{std::to_string(a.heads) + "/" + std::to_string(a.kv_heads) + " heads of " +
                             std::to_string(a.head_dim) + ", seq " + std::to_string(a.seq_len),
                         a,
                         gaussian<T>(a.heads * a.head_dim, tokens, 9),
                         gaussian<T>(a.kv_heads * a.head_dim, tokens, 10),
                         gaussian<T>(a.kv_heads * a.head_dim, tokens, 11),
                         gaussian<T>(a.heads * a.head_dim, tokens, 12),
                         {}};
            typename Bk::template Matrix<T> probs;
            (void)b.attention_forward(b.upload(item.q), b.upload(item.k), b.upload(item.v), a, probs);
            item.probs = b.download(probs);
            out.push_back(item);
        }
        return out;
    }
    template <class T, class Bk>
    static Result<T> run(Bk& b, const Item<T>& in) {
        const auto q = b.upload(in.q), k = b.upload(in.k), v = b.upload(in.v);
        auto probs = b.template zeros<T>(1, 1);  // a wrong shape: the kernel must reallocate it
        const auto out = b.attention_forward(q, k, v, in.shape, probs);
        typename Bk::template Matrix<T> dq, dk, dv;
        b.attention_backward(b.upload(in.d_out), q, k, v, b.upload(in.probs), in.shape, dq, dk, dv);
        return {b.download(out), b.download(probs), b.download(dq), b.download(dk), b.download(dv)};
    }
    template <class T, class Check>
    static void check(Check& c, const Item<T>& in, const Result<T>& got, const Result<T>& expected) {
        const AttentionShape& a = in.shape;
        const double hd = double(a.head_dim), s = double(a.seq_len), group = double(a.heads / a.kv_heads);
        c.below("probs", c.relative(got.probs, expected.probs), nn_tol<T>(hd + s));
        c.below("out", c.relative(got.out, expected.out), nn_tol<T>(hd + 2 * s));
        // Causality, exactly: keys after the query have probability 0.
        bool causal = true;
        for (Index col = 0; col < got.probs.cols(); ++col)
            for (Index key = col % a.seq_len + 1; key < a.seq_len; ++key) causal = causal && got.probs(key, col) == T(0);
        c.that("causal", causal);
        c.below("dq", c.relative(got.dq, expected.dq), nn_tol<T>(hd + 2 * s));
        c.below("dk", c.relative(got.dk, expected.dk), nn_tol<T>(hd + (1 + group) * s));
        c.below("dv", c.relative(got.dv, expected.dv), nn_tol<T>(group * s));
    }
};

struct Swiglu {
    static constexpr const char* title = "NN kernels: SwiGLU forward and backward";
    template <class T>
    struct Item {
        std::string label;
        HostMatrix<T> gate, up, dh;  // 37 x 26 each, gate with stddev 2
    };
    template <class T>
    struct Result {
        HostMatrix<T> h, d_gate, d_up;
    };
    template <class T, class Bk>
    static std::vector<Item<T>> items(Bk&) {
        return {{"37 x 26", gaussian<T>(37, 26, 13, 2.0), gaussian<T>(37, 26, 14), gaussian<T>(37, 26, 15)}};
    }
    template <class T, class Bk>
    static Result<T> run(Bk& b, const Item<T>& in) {
        const auto gate = b.upload(in.gate), up = b.upload(in.up);
        typename Bk::template Matrix<T> d_gate, d_up;
        b.swiglu_backward(b.upload(in.dh), gate, up, d_gate, d_up);
        return {b.download(b.swiglu_forward(gate, up)), b.download(d_gate), b.download(d_up)};
    }
    template <class T, class Check>
    static void check(Check& c, const Item<T>&, const Result<T>& got, const Result<T>& expected) {
        c.below("h", c.relative(got.h, expected.h), nn_tol<T>(4));
        c.below("d_gate", c.relative(got.d_gate, expected.d_gate), nn_tol<T>(4));
        c.below("d_up", c.relative(got.d_up, expected.d_up), nn_tol<T>(4));
    }
};

struct CrossEntropy {
    static constexpr const char* title =
        "NN kernels: cross-entropy (stable softmax, mean loss in double, ignored targets) and its exact backward";
    template <class T>
    struct Item {
        std::string label;
        HostMatrix<T> logits, probs;  // V x 26; probs: the CPU's forward, the backward's input
        Tokens targets;
    };
    template <class T>
    struct Result {
        double loss = 0;
        HostMatrix<T> probs, d_logits;
    };
    template <class T, class Bk>
    static std::vector<Item<T>> items(Bk& b) {
        std::vector<Item<T>> out;
        for (Index vocab : {Index(5), Index(300)}) {
            Item<T> item{"vocab " + std::to_string(vocab), gaussian<T>(vocab, 26, 16, 3.0), {},
                         random_tokens(26, vocab, 17)};
            item.logits(0, 0) = T(80);  // exp(80) overflows float: the max must be subtracted first
            item.targets[3] = item.targets[20] = loranull::ignore_target;  // mean over 24, zero gradient columns
            typename Bk::template Matrix<T> probs;
            (void)b.cross_entropy_forward(b.upload(item.logits), item.targets, probs);
            item.probs = b.download(probs);
            out.push_back(item);
        }
        return out;
    }
    template <class T, class Bk>
    static Result<T> run(Bk& b, const Item<T>& in) {
        Result<T> r;
        typename Bk::template Matrix<T> probs;
        r.loss = b.cross_entropy_forward(b.upload(in.logits), in.targets, probs);
        r.probs = b.download(probs);
        r.d_logits = b.download(b.cross_entropy_backward(b.upload(in.probs), in.targets));
        return r;
    }
    template <class T, class Check>
    static void check(Check& c, const Item<T>& in, const Result<T>& got, const Result<T>& expected) {
        const double vocab = double(in.logits.rows()), tokens = double(in.logits.cols());
        c.that("finite loss", std::isfinite(got.loss));
        c.below("loss", std::abs(got.loss - expected.loss) / std::abs(expected.loss), nn_tol<T>(vocab + tokens));
        c.below("probs", c.relative(got.probs, expected.probs), nn_tol<T>(vocab));
        c.that("backward, exact", got.d_logits == expected.d_logits);
    }
};

struct AdamWStep {
    static constexpr const char* title = "NN kernels: AdamW update (bias correction, decoupled weight decay)";
    template <class T>
    struct Item {
        std::string label;
        HostMatrix<T> param, m, v, grad;  // 33 x 7 each, v >= 0
        long step;
    };
    template <class T>
    struct Result {
        HostMatrix<T> param, m, v;
    };
    template <class T, class Bk>
    static std::vector<Item<T>> items(Bk&) {
        std::vector<Item<T>> out;
        HostMatrix<T> v = gaussian<T>(33, 7, 20, 0.01);
        for (Index i = 0; i < v.size(); ++i) v.data()[i] = std::abs(v.data()[i]);
        for (long step : {1L, 2L, 1000L})
            out.push_back({"step " + std::to_string(step), gaussian<T>(33, 7, 18), gaussian<T>(33, 7, 19, 0.1), v,
                           gaussian<T>(33, 7, 21, 0.1), step});
        return out;
    }
    template <class T, class Bk>
    static Result<T> run(Bk& b, const Item<T>& in) {
        auto param = b.upload(in.param), m = b.upload(in.m), v = b.upload(in.v);
        b.adamw_update(param, b.upload(in.grad), m, v, 1e-3, 0.9, 0.999, 1e-8, 0.1, in.step);
        return {b.download(param), b.download(m), b.download(v)};
    }
    template <class T, class Check>
    static void check(Check& c, const Item<T>&, const Result<T>& got, const Result<T>& expected) {
        c.below("m", c.relative(got.m, expected.m), nn_tol<T>(2));
        c.below("v", c.relative(got.v, expected.v), nn_tol<T>(2));
        c.below("param", c.relative(got.param, expected.param), nn_tol<T>(8));
    }
};

}  // namespace parity
