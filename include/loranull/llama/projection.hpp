#pragma once
// Projection: one of a block's seven linear maps (q, k, v, o, gate, up, down),
// dense or with a LoRA adapter in place of its weight.
//
//   dense   y = W x + b                 W (out x in) trains in full fine-tuning
//   LoRA    y = W_res x + s B A x + b   (a LoraLinear; W_res frozen)
//
// The bias b (out x 1; Qwen2's q/k/v, attention_bias, mlp_bias) is part of the
// frozen base model: an adapter never holds it, it never trains, and it does
// not enter the layer's input covariance.
//
// Gradients accumulate into d_* buffers that exist only for what trains, so a
// frozen parameter costs no gradient memory and no optimizer state.

#include <optional>
#include <string>
#include <utility>

#include "loranull/backend/backend.hpp"
#include "loranull/core/host_matrix.hpp"
#include "loranull/lora/lora_linear.hpp"

namespace loranull {

template <class Bk, Real T>
class Projection {
public:
    using Matrix = matrix_t<Bk, T>;

    Matrix weight;                          // out x in; unused (empty) while an adapter is attached
    Matrix bias;                            // out x 1, frozen; empty: no bias
    std::optional<LoraLinear<Bk, T>> lora;  // the adapter, when attached
    bool train_weight = false;              // dense weight trains (full fine-tuning)
    Matrix d_weight, d_A, d_B;              // gradients, allocated by zero_grad for what trains

    Index in_features() const { return lora ? lora->in_features() : weight.cols(); }
    Index out_features() const { return lora ? lora->out_features() : weight.rows(); }

    /// The dense weight the projection currently computes (W, or W_res + s B A).
    Matrix effective_weight() const { return lora ? lora->merged() : weight; }

    /// Replaces W by W_res + s B A (the factors must reproduce W at init for the
    /// model's outputs to stay the same; every residual initialiser does).
    void attach(Bk& b, LoraFactors<Bk, T> factors, Trainable trainable) {
        require(factors.W_res.rows() == out_features() && factors.W_res.cols() == in_features(), "Projection::attach",
                "adapter for ", shape_string(factors.W_res.rows(), factors.W_res.cols()), ", projection is ",
                shape_string(out_features(), in_features()));
        lora.emplace(b, std::move(factors), trainable);
        weight = Matrix();
        train_weight = false;
    }

    /// Merges the adapter back into a dense weight.
    void merge() {
        if (!lora) return;
        weight = lora->merged();
        lora.reset();
    }

    Matrix forward(Bk& b, const Matrix& x) const {
        Matrix y = forward_unbiased(b, x);
        add_bias(b, y);
        return y;
    }

    /// W x (or W_res x + s B A x): the output without the bias.
    Matrix forward_unbiased(Bk& b, const Matrix& x) const { return lora ? lora->forward(x) : product(b, weight, x); }

    /// y += b 1^T when the projection has a bias: a rank-one product, on any backend.
    void add_bias(Bk& b, Matrix& y) const {
        if (bias.rows() == 0) return;
        const Matrix ones = b.upload(HostMatrix<T>(1, y.cols(), T(1)));
        b.gemm(Op::none, Op::none, T(1), bias, ones, T(1), y);
    }

    /// Accumulates the gradients of what trains; returns dL/dx.
    Matrix backward(Bk& b, const Matrix& x, const Matrix& dy) {
        if (lora) {
            auto g = lora->backward(x, dy);
            if (lora->trains_A()) b.axpy(T(1), g.dA, d_A);
            if (lora->trains_B()) b.axpy(T(1), g.dB, d_B);
            return std::move(g.dX);
        }
        if (train_weight) b.gemm(Op::none, Op::transpose, T(1), dy, x, T(1), d_weight);
        return product(b, weight, dy, Op::transpose);
    }

    void zero_grad(Bk& b) {
        if (lora) {
            d_A = lora->trains_A() ? zeros<T>(b, lora->A.rows(), lora->A.cols()) : Matrix();
            d_B = lora->trains_B() ? zeros<T>(b, lora->B.rows(), lora->B.cols()) : Matrix();
            d_weight = Matrix();
        } else {
            d_weight = train_weight ? zeros<T>(b, weight.rows(), weight.cols()) : Matrix();
        }
    }
};

}  // namespace loranull
