#pragma once
// The CPU backend's neural-network kernels: the forward and backward of every
// op of the LLaMA decoder, plus AdamW. Plain loops over columns (one column per
// token), with BLAS ?gemm (Eigen without LAPACK) for the per-head products of
// attention; each function says its equation. These are also the references the GPU kernels are checked
// against.
//
// Layouts (column-major, T = batch * seq tokens, token t = b * seq + position):
//   activations       d x T
//   q, k, v           (heads * head_dim) x T, head h in rows [h hd, (h + 1) hd)
//   attention probs   seq x (seq * heads * batch): block (b * heads + h) holds
//                     P[key, query] for that sequence and head (causal: 0 above
//                     the diagonal, i.e. for key > query)
//   token ids         std::vector<std::int32_t> of length T, on the host

#include <cmath>
#include <cstdint>
#include <vector>

#include <Eigen/Dense>

#include "loranull/backend/cpu/gemm.hpp"
#include "loranull/backend/nn.hpp"
#include "loranull/core/error.hpp"
#include "loranull/core/types.hpp"

namespace loranull {


class CpuNnKernels {
public:
    template <class T>
    using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;

    // --- embedding -------------------------------------------------------------

    /// X(:, t) = table(:, tokens[t]); table is d x vocab.
    template <Real T>
    Mat<T> embedding_forward(const Mat<T>& table, const std::vector<std::int32_t>& tokens) const {
        check_token_ids(tokens, table.cols(), "embedding_forward");
        Mat<T> x(table.rows(), static_cast<Index>(tokens.size()));
        for (std::size_t t = 0; t < tokens.size(); ++t) x.col(static_cast<Index>(t)) = table.col(tokens[t]);
        return x;
    }

    /// d_table(:, tokens[t]) += dX(:, t).
    template <Real T>
    void embedding_backward(Mat<T>& d_table, const Mat<T>& dx, const std::vector<std::int32_t>& tokens) const {
        check_embedding_backward(d_table, dx, tokens, "embedding_backward");
        for (std::size_t t = 0; t < tokens.size(); ++t) d_table.col(tokens[t]) += dx.col(static_cast<Index>(t));
    }

    // --- RMSNorm ---------------------------------------------------------------

    /// y = x * rstd * g per column, rstd = 1 / sqrt(mean(x^2) + eps); rstd (1 x T) saved.
    template <Real T>
    Mat<T> rmsnorm_forward(const Mat<T>& x, const Mat<T>& gain, T eps, Mat<T>& rstd) const {
        check_rmsnorm_gain(x, gain, "rmsnorm_forward");
        rstd.resize(1, x.cols());
        Mat<T> y(x.rows(), x.cols());
        for (Index t = 0; t < x.cols(); ++t) {
            const T r = T(1) / std::sqrt(x.col(t).squaredNorm() / T(x.rows()) + eps);
            rstd(0, t) = r;
            y.col(t) = x.col(t).cwiseProduct(gain) * r;
        }
        return y;
    }

    /// With u = g * dy:  dx = rstd u - x rstd^3 (x . u) / d,   dg += sum_t dy * x * rstd.
    template <Real T>
    Mat<T> rmsnorm_backward(const Mat<T>& dy, const Mat<T>& x, const Mat<T>& gain, const Mat<T>& rstd,
                            Mat<T>& d_gain) const {
        Mat<T> dx(x.rows(), x.cols());
        const T d = T(x.rows());
        for (Index t = 0; t < x.cols(); ++t) {
            const T r = rstd(0, t);
            const auto u = dy.col(t).cwiseProduct(gain);
            dx.col(t) = r * u - x.col(t) * (r * r * r * x.col(t).dot(u) / d);
            d_gain += dy.col(t).cwiseProduct(x.col(t)) * r;
        }
        return dx;
    }

    // --- rotary position embedding (Hugging Face "rotate half" layout) ---------

    /// In place, for each head and position p = t mod seq_len, pairs (i, i + hd/2):
    ///   x_i' = x_i cos(p f_i) - x_{i+hd/2} sin(p f_i),  x_{i+hd/2}' = x_{i+hd/2} cos + x_i sin,
    ///   f_i = theta^(-2i / hd). direction = -1 applies the inverse rotation (the backward).
    template <Real T>
    void rope(Mat<T>& x, Index heads, Index head_dim, Index seq_len, const std::vector<double>& frequencies,
              int direction = 1) const {
        check_rope(x, heads, head_dim, seq_len, frequencies, "rope");
        const Index half = head_dim / 2;
        // cos/sin of every (position, frequency) once, in double: seq_len x half each.
        Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic> cosines(half, seq_len), sines(half, seq_len);
        for (Index p = 0; p < seq_len; ++p)
            for (Index i = 0; i < half; ++i) {
                const double angle = double(p) * frequencies[static_cast<std::size_t>(i)];
                cosines(i, p) = T(std::cos(angle));
                sines(i, p) = T(direction * std::sin(angle));
            }
        for (Index t = 0; t < x.cols(); ++t) {
            const Index position = t % seq_len;
            for (Index i = 0; i < half; ++i) {
                const T c = cosines(i, position), s = sines(i, position);
                for (Index h = 0; h < heads; ++h) {
                    T& a = x(h * head_dim + i, t);
                    T& b = x(h * head_dim + i + half, t);
                    const T x1 = a, x2 = b;
                    a = x1 * c - x2 * s;
                    b = x2 * c + x1 * s;
                }
            }
        }
    }

    // --- causal grouped-query attention ----------------------------------------

    /// For each sequence and head h (kv head h / (heads / kv_heads)):
    ///   S = K_h^T Q_h / sqrt(hd) (keys x queries), P = softmax over keys <= query,
    ///   O_h = V_h P. Returns O ((heads hd) x T); P saved (see the layout above).
    template <Real T>
    Mat<T> attention_forward(const Mat<T>& q, const Mat<T>& k, const Mat<T>& v, const AttentionShape& a,
                             Mat<T>& probs) const {
        check_attention(q, k, v, a, "attention_forward");
        const Index s = a.seq_len, batch = q.cols() / s, group = a.heads / a.kv_heads;
        const T inv_sqrt = T(1) / std::sqrt(T(a.head_dim));
        probs.setZero(s, s * a.heads * batch);
        Mat<T> out(q.rows(), q.cols());
        for (Index b = 0; b < batch; ++b)
            for (Index h = 0; h < a.heads; ++h) {
                const Index kv = h / group;
                auto qh = q.block(h * a.head_dim, b * s, a.head_dim, s);
                auto kh = k.block(kv * a.head_dim, b * s, a.head_dim, s);
                auto vh = v.block(kv * a.head_dim, b * s, a.head_dim, s);
                auto p = probs.block(0, (b * a.heads + h) * s, s, s);
                cpu_detail::gemm(true, false, inv_sqrt, kh, qh, T(0), p);  // s x s: K_h^T Q_h / sqrt(hd)
                causal_softmax(p, s);
                cpu_detail::gemm(false, false, T(1), vh, p, T(0), out.block(h * a.head_dim, b * s, a.head_dim, s));
            }
        return out;
    }

    /// attention_forward's O without saving P (a forward that no backward
    /// follows: calibration, evaluation). The query heads of one kv head are
    /// laid side by side and go through one product each way,
    ///   S = K_g^T [Q_h1 .. Q_hG] / sqrt(hd)   (seq x G seq),   O_g = V_g P,
    /// with P one kv group's probabilities in a scratch reused for every group
    /// (a few MiB that stay in cache, instead of seq^2 heads batch floats).
    template <Real T>
    Mat<T> attention_inference(const Mat<T>& q, const Mat<T>& k, const Mat<T>& v, const AttentionShape& a) const {
        check_attention(q, k, v, a, "attention_inference");
        const Index s = a.seq_len, batch = q.cols() / s, group = a.heads / a.kv_heads, hd = a.head_dim;
        const T inv_sqrt = T(1) / std::sqrt(T(hd));
        Mat<T> out(q.rows(), q.cols()), queries(hd, group * s), p(s, group * s), outputs(hd, group * s);
        for (Index b = 0; b < batch; ++b)
            for (Index kv = 0; kv < a.kv_heads; ++kv) {
                for (Index j = 0; j < group; ++j)
                    queries.middleCols(j * s, s) = q.block((kv * group + j) * hd, b * s, hd, s);
                cpu_detail::gemm(true, false, inv_sqrt, k.block(kv * hd, b * s, hd, s), queries, T(0), p);
                causal_softmax(p, s);
                cpu_detail::gemm(false, false, T(1), v.block(kv * hd, b * s, hd, s), p, T(0), outputs);
                for (Index j = 0; j < group; ++j)
                    out.block((kv * group + j) * hd, b * s, hd, s) = outputs.middleCols(j * s, s);
            }
        return out;
    }

    /// dP = V_h^T dO_h, dS = P * (dP - sum_keys P * dP), dQ_h = K_h dS / sqrt(hd),
    /// dK_h += Q_h dS^T / sqrt(hd), dV_h += dO_h P^T (kv heads sum over their group).
    template <Real T>
    void attention_backward(const Mat<T>& d_out, const Mat<T>& q, const Mat<T>& k, const Mat<T>& v,
                            const Mat<T>& probs, const AttentionShape& a, Mat<T>& dq, Mat<T>& dk, Mat<T>& dv) const {
        check_attention(q, k, v, a, "attention_backward");
        const Index s = a.seq_len, batch = q.cols() / s, group = a.heads / a.kv_heads;
        const T inv_sqrt = T(1) / std::sqrt(T(a.head_dim));
        dq.setZero(q.rows(), q.cols());
        dk.setZero(k.rows(), k.cols());
        dv.setZero(v.rows(), v.cols());
        Mat<T> dp(s, s);
        for (Index b = 0; b < batch; ++b)
            for (Index h = 0; h < a.heads; ++h) {
                const Index kv = h / group;
                auto qh = q.block(h * a.head_dim, b * s, a.head_dim, s);
                auto kh = k.block(kv * a.head_dim, b * s, a.head_dim, s);
                auto vh = v.block(kv * a.head_dim, b * s, a.head_dim, s);
                auto doh = d_out.block(h * a.head_dim, b * s, a.head_dim, s);
                auto p = probs.block(0, (b * a.heads + h) * s, s, s);
                cpu_detail::gemm(false, true, T(1), doh, p, T(1), dv.block(kv * a.head_dim, b * s, a.head_dim, s));
                cpu_detail::gemm(true, false, T(1), vh, doh, T(0), dp);
                for (Index j = 0; j < s; ++j) {
                    const T dot = p.col(j).dot(dp.col(j));
                    dp.col(j) = p.col(j).cwiseProduct((dp.col(j).array() - dot).matrix());
                }
                cpu_detail::gemm(false, false, inv_sqrt, kh, dp, T(1), dq.block(h * a.head_dim, b * s, a.head_dim, s));
                cpu_detail::gemm(false, true, inv_sqrt, qh, dp, T(1), dk.block(kv * a.head_dim, b * s, a.head_dim, s));
            }
    }

    // --- SwiGLU ------------------------------------------------------------------

    /// h = silu(g) * u, silu(g) = g / (1 + exp(-g)).
    template <Real T>
    Mat<T> swiglu_forward(const Mat<T>& gate, const Mat<T>& up) const {
        check_swiglu(gate, up, "swiglu_forward");
        return (gate.array() / (T(1) + (-gate.array()).exp()) * up.array()).matrix();
    }

    /// dgate = dh * u * sigma(g) (1 + g (1 - sigma(g))),  dup = dh * silu(g).
    template <Real T>
    void swiglu_backward(const Mat<T>& dh, const Mat<T>& gate, const Mat<T>& up, Mat<T>& d_gate, Mat<T>& d_up) const {
        const auto sigma = (T(1) / (T(1) + (-gate.array()).exp()));
        d_up = (dh.array() * gate.array() * sigma).matrix();
        d_gate = (dh.array() * up.array() * sigma * (T(1) + gate.array() * (T(1) - sigma))).matrix();
    }

    // --- softmax cross-entropy -------------------------------------------------

    /// Mean over the scored tokens of -log softmax(logits(:, t))[targets[t]];
    /// probs (V x T) saved. A target of ignore_target (-1) scores nothing at
    /// that position (a prompt byte in supervised fine-tuning, padding); at
    /// least one target must be scored.
    template <Real T>
    double cross_entropy_forward(const Mat<T>& logits, const std::vector<std::int32_t>& targets, Mat<T>& probs) const {
        check_cross_entropy(logits, targets, "logits", "cross_entropy_forward");
        const Index scored = scored_targets(targets, logits.rows(), "cross_entropy_forward");
        probs.resize(logits.rows(), logits.cols());
        double loss = 0;
        for (Index t = 0; t < logits.cols(); ++t) {
            const std::int32_t y = targets[static_cast<std::size_t>(t)];
            const T max = logits.col(t).maxCoeff();
            probs.col(t) = (logits.col(t).array() - max).exp().matrix();
            const T sum = probs.col(t).sum();
            probs.col(t) /= sum;
            if (y != ignore_target) loss += double(std::log(sum)) + double(max) - double(logits(y, t));
        }
        return loss / double(scored);
    }

    /// dlogits = (probs - onehot(targets)) / S for the S scored tokens, 0 in
    /// ignored columns.
    template <Real T>
    Mat<T> cross_entropy_backward(const Mat<T>& probs, const std::vector<std::int32_t>& targets) const {
        check_cross_entropy(probs, targets, "probs", "cross_entropy_backward");
        const T scored = T(scored_targets(targets, probs.rows(), "cross_entropy_backward"));
        Mat<T> d = probs / scored;
        for (Index t = 0; t < probs.cols(); ++t) {
            const std::int32_t y = targets[static_cast<std::size_t>(t)];
            if (y == ignore_target)
                d.col(t).setZero();
            else
                d(y, t) -= T(1) / scored;
        }
        return d;
    }

    // --- AdamW (decoupled weight decay) ------------------------------------------

    /// m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    /// p -= lr (m / (1 - b1^step) / (sqrt(v / (1 - b2^step)) + eps) + wd p).
    template <Real T>
    void adamw_update(Mat<T>& param, const Mat<T>& grad, Mat<T>& m, Mat<T>& v, double lr, double beta1, double beta2,
                      double eps, double weight_decay, long step) const {
        check_adamw(param, grad, m, v, "adamw_update");
        const double c1 = 1 - std::pow(beta1, double(step)), c2 = 1 - std::pow(beta2, double(step));
        m = T(beta1) * m + T(1 - beta1) * grad;
        v = T(beta2) * v + T(1 - beta2) * grad.cwiseProduct(grad);
        param.array() -= T(lr) * ((m.array() / T(c1)) / ((v.array() / T(c2)).sqrt() + T(eps)) +
                                  T(weight_decay) * param.array());
    }

private:
    /// Scores S (seq x columns, keys x queries, the queries of one or more
    /// heads side by side) become probabilities in place: column c is query
    /// j = c mod seq, which sees keys 0 .. j (stable softmax over them; the
    /// keys after it get 0).
    template <class P>
    static void causal_softmax(P&& p, Index seq) {
        for (Index c = 0; c < p.cols(); ++c) {
            const Index j = c % seq;
            auto col = p.col(c).head(j + 1);
            const auto max = col.maxCoeff();
            col = (col.array() - max).exp().matrix();
            col /= col.sum();
            p.col(c).tail(seq - j - 1).setZero();
        }
    }
};

}  // namespace loranull
