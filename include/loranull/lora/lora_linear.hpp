#pragma once
// LoraLinear: a linear layer with a low-rank adapter (SPEC.md sections 3 and 6),
//
//     y = W_res x + s B (A x)            x: n x T (one column per token), y: m x T
//
// W_res (m x n) is frozen; A (r x n) and B (m x r) train as `Trainable` says
// (LoRA-Null v2 freezes A). The initial factors A0, B0 are kept: they define
// the adapter for the *original* weight W = W_res + s B0 A0 (to_plain_lora) and
// the knowledge-preservation bound (lora/knowledge_report.hpp).
//
// Bk is the backend (CpuBackend, CudaBackend); T the scalar type.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "loranull/backend/backend.hpp"
#include "loranull/core/error.hpp"
#include "loranull/core/random.hpp"
#include "loranull/linalg/svd.hpp"

namespace loranull {

/// What an initialiser returns: W = W_res + scale * B A (exactly for residual
/// methods, where W_res = W - scale * B A; trivially for LoRA and EVA, B = 0).
template <class Bk, Real T>
struct LoraFactors {
    using Matrix = matrix_t<Bk, T>;
    Matrix A;        // r x n, down-projection
    Matrix B;        // m x r, up-projection
    Matrix W_res;    // m x n, the frozen base weight from now on
    T scale = 1;     // s = alpha / r
    std::string method;

    Index rank() const { return A.rows(); }
};

enum class Trainable { both, B_only, A_only };

/// ||W - W_res - s B A||_F / ||W||_F: how exactly factors reproduce the weight
/// they were initialised from (rounding only, for every initialiser).
template <class Bk, class M>
double reconstruction_error(Bk& b, const M& w, const LoraFactors<Bk, typename M::Scalar>& f) {
    using T = typename M::Scalar;
    M residual = w;
    b.axpy(T(-1), f.W_res, residual);
    b.gemm(Op::none, Op::none, -f.scale, f.B, f.A, T(1), residual);
    return double(b.frobenius_norm(residual)) / std::max(double(b.frobenius_norm(w)), 1e-300);
}

/// reconstruction_error estimated through `probes` Gaussian vectors G (n x k):
/// ||E||_F^2 = E ||E G||_F^2 / k for E = W - W_res - s B A, at O(m n k) flops
/// instead of the O(m n r) product s B A (a whole checkpoint's builder: 7
/// projections a block). With k = 16, ||E G||_F^2 / k is ||E||_F^2 times a
/// mean of chi-squares of 16 degrees of freedom: within a factor 2 of the
/// exact norm except with probability ~1e-3 (rank-one E, the worst case; the
/// probes are seeded, so the value is reproducible). The quantity is rounding,
/// ~1e-16, so that is ample to tell right factors from wrong ones.
template <class Bk, class M>
double reconstruction_error_estimate(Bk& b, const M& w, const LoraFactors<Bk, typename M::Scalar>& f,
                                     Index probes = 16, std::uint64_t seed = 0x5EC0) {
    using T = typename M::Scalar;
    Rng rng(seed);
    const M g = b.upload(random_normal<T>(w.cols(), probes, rng));  // n x k
    M eg = product(b, w, g);                                         // m x k: (W - W_res - s B A) G
    b.gemm(Op::none, Op::none, T(-1), f.W_res, g, T(1), eg);
    b.gemm(Op::none, Op::none, -f.scale, f.B, product(b, f.A, g), T(1), eg);
    const double estimate = double(b.frobenius_norm(eg)) / std::sqrt(double(probes));
    return estimate / std::max(double(b.frobenius_norm(w)), 1e-300);
}

/// The rank-2r adapter s (B' A' - B0 A0) = [B', -B0] [A'; A0] * s for the
/// unmodified base weight W (PEFT's "convert to plain LoRA"), with the scale
/// folded into up = s [B', -B0]. Its rank doubles: truncated() re-compresses.
template <class Bk, Real T>
struct PlainLora {
    using Matrix = matrix_t<Bk, T>;
    Matrix down;  // 2r x n: [A'; A0]
    Matrix up;    // m x 2r: s [B', -B0]
    /// Of the last truncation: ||delta - truncated||_F and ||.||_2 (0 before).
    double truncation_error_frobenius = 0;
    double truncation_error_spectral = 0;

    Index rank() const { return down.rows(); }

    /// The best rank-k approximation of up * down (Eckart-Young), via two thin
    /// QRs and the SVD of a 2r x 2r core, never the m x n product.
    PlainLora truncated(Bk& b, Index k) const {
        const char* where = "PlainLora::truncated";
        require(k >= 1 && k <= rank(), where, "rank ", k, " requested of a rank-", rank(), " adapter");
        const Matrix q_up = b.thin_q(up);                                  // m x p
        const Matrix r_up = product(b, q_up, up, Op::transpose);           // p x 2r: Q^T up
        const Matrix down_t = b.transpose(down);                           // n x 2r
        const Matrix q_down = b.thin_q(down_t);                            // n x q
        const Matrix r_down = product(b, q_down, down_t, Op::transpose);   // q x 2r
        const Matrix core = product(b, r_up, r_down, Op::none, Op::transpose);  // p x q
        const auto svd = b.thin_svd(core);
        const Index kk = std::min<Index>(k, static_cast<Index>(svd.singular_values.size()));
        std::vector<T> root(static_cast<std::size_t>(kk));
        for (Index i = 0; i < kk; ++i) root[static_cast<std::size_t>(i)] = std::sqrt(svd.singular_values[static_cast<std::size_t>(i)]);
        PlainLora out;
        out.up = product(b, q_up, b.block(svd.U, 0, 0, svd.U.rows(), kk));       // m x k
        b.scale_columns(out.up, root);
        out.down = product(b, b.block(svd.V, 0, 0, svd.V.rows(), kk), q_down, Op::transpose, Op::transpose);  // k x n
        b.scale_rows(out.down, root);
        double tail = 0;
        for (std::size_t i = static_cast<std::size_t>(kk); i < svd.singular_values.size(); ++i)
            tail += double(svd.singular_values[i]) * double(svd.singular_values[i]);
        out.truncation_error_frobenius = std::sqrt(tail);
        out.truncation_error_spectral =
            kk < static_cast<Index>(svd.singular_values.size()) ? double(svd.singular_values[static_cast<std::size_t>(kk)]) : 0.0;
        return out;
    }
};

/// The rank-2r conversion itself: down = [A; A0] (2r x n), up = s [B, -B0]
/// (m x 2r), so that up * down = s (B A - B0 A0). LoraLinear::to_plain_lora
/// calls it with its current and initial factors; a builder that ships freshly
/// initialised factors (A = A0, B = B0) calls it directly.
template <class Bk, class Matrix>
PlainLora<Bk, typename Matrix::Scalar> plain_lora(Bk& b, const Matrix& a, const Matrix& up_b, const Matrix& a0,
                                                  const Matrix& b0, typename Matrix::Scalar scale) {
    using T = typename Matrix::Scalar;
    const Index r = a.rows();
    require(a0.rows() == r && up_b.cols() == r && b0.cols() == r && a0.cols() == a.cols() && b0.rows() == up_b.rows(),
            "plain_lora", "A is ", shape_string(a.rows(), a.cols()), ", B ", shape_string(up_b.rows(), up_b.cols()),
            ", A0 ", shape_string(a0.rows(), a0.cols()), ", B0 ", shape_string(b0.rows(), b0.cols()),
            " (need A, A0 r x n and B, B0 m x r)");
    PlainLora<Bk, T> out;
    out.down = zeros<T>(b, 2 * r, a.cols());
    b.set_block(out.down, 0, 0, a);
    b.set_block(out.down, r, 0, a0);
    out.up = zeros<T>(b, up_b.rows(), 2 * r);
    b.set_block(out.up, 0, 0, up_b);
    Matrix minus_b0 = b0;
    b.scale(T(-1), minus_b0);
    b.set_block(out.up, 0, r, minus_b0);
    b.scale(scale, out.up);
    return out;
}

template <class Bk, Real T>
class LoraLinear {
public:
    using Matrix = matrix_t<Bk, T>;

    /// Gradients of a loss L with respect to the input and the trainable factors
    /// (dA or dB is empty, 0 x 0, when that factor is frozen). Never dW_res.
    struct Gradients {
        Matrix dX;  // n x T
        Matrix dA;  // r x n
        Matrix dB;  // m x r
    };

    LoraLinear(Bk& backend, LoraFactors<Bk, T> factors, Trainable trainable = Trainable::both)
        : A(std::move(factors.A)), B(std::move(factors.B)), W_res(std::move(factors.W_res)), scale(factors.scale),
          trainable(trainable), method(std::move(factors.method)), backend_(&backend) {
        const char* where = "LoraLinear::LoraLinear";
        require(A.rows() == B.cols() && A.rows() >= 1, where, "A is ", shape_string(A.rows(), A.cols()), ", B is ",
                shape_string(B.rows(), B.cols()), ": need A r x n and B m x r with r >= 1");
        require(W_res.rows() == B.rows() && W_res.cols() == A.cols(), where, "W_res is ",
                shape_string(W_res.rows(), W_res.cols()), ", expected ", shape_string(B.rows(), A.cols()));
        require(std::isfinite(scale), where, "scale is not finite");
        A0 = A;
        B0 = B;
    }

    Index in_features() const { return W_res.cols(); }
    Index out_features() const { return W_res.rows(); }
    Index rank() const { return A.rows(); }
    bool trains_A() const { return trainable != Trainable::B_only; }
    bool trains_B() const { return trainable != Trainable::A_only; }

    /// y = W_res x + s B (A x) for x n x T.
    Matrix forward(const Matrix& x) const {
        check_input(x, "LoraLinear::forward");
        Matrix y = product(*backend_, W_res, x);             // m x T
        const Matrix h = product(*backend_, A, x);           // r x T
        backend_->gemm(Op::none, Op::none, scale, B, h, T(1), y);
        return y;
    }

    /// Gradients for dy = dL/dy (m x T) at input x (n x T):
    ///   h = A x,  dB = s dy h^T,  dh = s B^T dy,  dA = dh x^T,  dX = W_res^T dy + A^T dh.
    Gradients backward(const Matrix& x, const Matrix& dy) const {
        const char* where = "LoraLinear::backward";
        check_input(x, where);
        require(dy.rows() == out_features() && dy.cols() == x.cols(), where, "dy is ", shape_string(dy.rows(), dy.cols()),
                ", expected ", shape_string(out_features(), x.cols()));
        Bk& b = *backend_;
        Gradients g;
        Matrix dh = zeros<T>(b, rank(), x.cols());
        b.gemm(Op::transpose, Op::none, scale, B, dy, T(0), dh);        // r x T
        g.dX = product(b, W_res, dy, Op::transpose);                    // n x T
        b.gemm(Op::transpose, Op::none, T(1), A, dh, T(1), g.dX);
        if (trains_A()) g.dA = product(b, dh, x, Op::none, Op::transpose);  // r x n
        if (trains_B()) {
            const Matrix h = product(b, A, x);
            g.dB = zeros<T>(b, out_features(), rank());
            b.gemm(Op::none, Op::transpose, scale, dy, h, T(0), g.dB);      // m x r
        }
        return g;
    }

    /// The dense weight W_res + s B A (to ship a merged model).
    Matrix merged() const {
        Matrix w = W_res;
        backend_->gemm(Op::none, Op::none, scale, B, A, T(1), w);
        return w;
    }

    /// The adapter for the original base weight W = W_res + s B0 A0 (rank 2r;
    /// see PlainLora): W + up * down equals merged().
    PlainLora<Bk, T> to_plain_lora() const { return plain_lora(*backend_, A, B, A0, B0, scale); }

    /// The same, checked against the original weight W: W must be m x n and
    /// equal W_res + s B0 A0 to `relative_tolerance` (catches converting against
    /// the wrong base model).
    PlainLora<Bk, T> to_plain_lora(const Matrix& w, double relative_tolerance = -1) const {
        const char* where = "LoraLinear::to_plain_lora";
        require(w.rows() == out_features() && w.cols() == in_features(), where, "W is ", shape_string(w.rows(), w.cols()),
                ", the layer is ", shape_string(out_features(), in_features()));
        Bk& b = *backend_;
        Matrix original = W_res;
        b.gemm(Op::none, Op::none, scale, B0, A0, T(1), original);
        b.axpy(T(-1), w, original);
        const double tolerance = relative_tolerance >= 0 ? relative_tolerance : 100 * std::numeric_limits<T>::epsilon() * std::sqrt(double(w.cols()));
        const double mismatch = double(b.frobenius_norm(original)) / std::max(double(b.frobenius_norm(w)), 1e-300);
        require(mismatch <= tolerance, where, "W differs from the layer's W_res + s B0 A0 by ", mismatch,
                " (relative), more than ", tolerance, ": not the weight this adapter was initialised from");
        return to_plain_lora();
    }

    // The parameters, public as in llm.c: trainers update them in place.
    Matrix A;        // r x n
    Matrix B;        // m x r
    Matrix W_res;    // m x n, frozen
    Matrix A0;       // r x n, A at initialisation
    Matrix B0;       // m x r, B at initialisation
    T scale;         // s
    Trainable trainable;
    std::string method;

private:
    Bk* backend_;  // not owned

    void check_input(const Matrix& x, const char* where) const {
        require(x.rows() == in_features(), where, "x is ", shape_string(x.rows(), x.cols()), ", expected ",
                in_features(), " rows");
    }
};

}  // namespace loranull
