#pragma once
// How much of the pre-trained signal an adapter touches (SPEC.md section 4).
//
// For a layer y = W_res x + s B A x initialised at (A0, B0), and activations X
// of pre-trained inputs (n x T):
//
//   adapter_input        ||A X||_F            what the adapter sees of X
//   output_change        s ||(B A - B0 A0) X||_F   how far training moved the
//                        layer's output on X (0 at initialisation)
//   bound                s ||B - B0||_2 ||A0 X||_F, valid whenever A = A0 (v2):
//                        output_change <= bound, whatever B became
//   null_space_bound     s ||B - B0||_2 ||A0||_2 ||X^T U_null||_F, the same
//                        bound through the null space's eps (when U_null given)
//
// For LoRA-Null A0's rows lie in span(U_null), so ||A0 X|| is tiny and B may
// move freely. For v1 (A trains) the bound holds at initialisation only, and
// bound_applies says so.
//
// When X itself is too large to keep (a whole checkpoint's calibration), the
// same quantities at initialisation follow from the covariance C = X X^T / c
// alone (the normaliser c cancels in every ratio): initial_knowledge_report.

#include <algorithm>
#include <cmath>
#include <optional>

#include "loranull/backend/backend.hpp"
#include "loranull/core/error.hpp"
#include "loranull/lora/lora_linear.hpp"

namespace loranull {

struct KnowledgeReport {
    double adapter_input = 0;          // ||A X||_F
    double initial_adapter_input = 0;  // ||A0 X||_F
    double output_change = 0;          // s ||(B A - B0 A0) X||_F
    double base_output = 0;            // ||W X||_F, W = W_res + s B0 A0: the scale to compare with
    double bound = 0;                  // s ||B - B0||_2 ||A0 X||_F
    double null_space_bound = -1;      // s ||B - B0||_2 ||A0||_2 ||X^T U_null||_F (-1: no U_null given)
    bool bound_applies = false;        // A == A0 (A frozen, or untouched)

    /// output_change / base_output: the relative change of the layer's output.
    double relative_change() const { return base_output > 0 ? output_change / base_output : 0.0; }
};

namespace detail {

template <class Bk, class M>
double spectral_norm(Bk& b, const M& a) {
    const auto svd = b.thin_svd(a);
    return svd.singular_values.empty() ? 0.0 : double(svd.singular_values[0]);
}

}  // namespace detail

/// knowledge_report's squared norms, summed over batches of activations
/// (a squared Frobenius norm adds over columns): the report of a whole
/// calibration set streamed through a model batch by batch, each batch
/// forgotten once added.
struct KnowledgeSums {
    double adapter_input = 0;          // sum of ||A X||_F^2
    double initial_adapter_input = 0;  // sum of ||A0 X||_F^2
    double output_change = 0;          // sum of ||(B A - B0 A0) X||_F^2
    double base_output = 0;            // sum of ||W X||_F^2, W = W_res + s B0 A0

    /// Adds X (n x T) for the factors (A, B) against the layer's initial ones.
    template <class Bk, Real T>
    void add(Bk& b, const LoraLinear<Bk, T>& layer, const matrix_t<Bk, T>& A, const matrix_t<Bk, T>& B,
             const matrix_t<Bk, T>& x) {
        using Matrix = matrix_t<Bk, T>;
        require(x.rows() == layer.in_features(), "KnowledgeSums::add", "X is ", shape_string(x.rows(), x.cols()),
                ", the layer takes ", layer.in_features(), " inputs");
        const Matrix ax = product(b, A, x);           // r x T
        const Matrix a0x = product(b, layer.A0, x);   // r x T
        // (B A - B0 A0) X = B (A X) - B0 (A0 X)
        Matrix change = product(b, B, ax);
        b.gemm(Op::none, Op::none, T(-1), layer.B0, a0x, T(1), change);
        Matrix base = product(b, layer.W_res, x);
        b.gemm(Op::none, Op::none, layer.scale, layer.B0, a0x, T(1), base);
        auto squared = [&](const Matrix& m) {
            const double n = double(b.frobenius_norm(m));
            return n * n;
        };
        adapter_input += squared(ax);
        initial_adapter_input += squared(a0x);
        output_change += squared(change);
        base_output += squared(base);
    }

    /// The report of the sums, for the factors (A, B) they were added with.
    template <class Bk, Real T>
    KnowledgeReport report(Bk& b, const LoraLinear<Bk, T>& layer, const matrix_t<Bk, T>& A,
                           const matrix_t<Bk, T>& B) const {
        using Matrix = matrix_t<Bk, T>;
        KnowledgeReport r;
        const double s = std::abs(double(layer.scale));
        r.adapter_input = std::sqrt(adapter_input);
        r.initial_adapter_input = std::sqrt(initial_adapter_input);
        r.output_change = s * std::sqrt(output_change);
        r.base_output = std::sqrt(base_output);
        Matrix delta_b = B;
        b.axpy(T(-1), layer.B0, delta_b);
        r.bound = s * detail::spectral_norm(b, delta_b) * r.initial_adapter_input;
        Matrix delta_a = A;
        b.axpy(T(-1), layer.A0, delta_a);
        r.bound_applies = b.frobenius_norm(delta_a) == T(0);
        return r;
    }
};

/// The report for `layer` on activations X (n x T). Pass the layer's null-space
/// basis (n x r) to get null_space_bound as well.
template <class Bk, Real T>
KnowledgeReport knowledge_report(Bk& b, const LoraLinear<Bk, T>& layer, const matrix_t<Bk, T>& x,
                                 const matrix_t<Bk, T>* null_space_basis = nullptr) {
    using Matrix = matrix_t<Bk, T>;
    const char* where = "knowledge_report";
    KnowledgeSums sums;
    sums.add(b, layer, layer.A, layer.B, x);
    KnowledgeReport report = sums.report(b, layer, layer.A, layer.B);
    if (null_space_basis) {
        require(null_space_basis->rows() == layer.in_features(), where, "null-space basis is ",
                shape_string(null_space_basis->rows(), null_space_basis->cols()), ", expected ", layer.in_features(),
                " rows");
        Matrix delta_b = layer.B;
        b.axpy(T(-1), layer.B0, delta_b);
        const Matrix xu = product(b, x, *null_space_basis, Op::transpose);  // T x r
        report.null_space_bound = std::abs(double(layer.scale)) * detail::spectral_norm(b, delta_b) *
                                  detail::spectral_norm(b, layer.A0) * double(b.frobenius_norm(xu));
    }
    return report;
}

/// SPEC.md section 4 at initialisation, from a layer's input covariance C (n x n,
/// C = X X^T / c) instead of the activations X, relative to ||W X||_F:
///
///   energy = ||X^T Q||_F^2 / ||X||_F^2 = tr(Q^T C Q) / tr(C), Q an orthonormal
///            basis of A0's row space: the share of the calibration signal the
///            adapter can see (for LoRA-Null span(U_null), so the sum of the r
///            smallest eigenvalues over tr C);
///   bound  = s ||A0||_2 ||X^T Q||_F / ||W X||_F: the bound on the relative
///            change of the layer's output on X per unit of ||B' - B0||_2
///            (v2: A frozen), ||W X||_F^2 = <W C, W>;
///   tight  = s ||A0 X||_F / ||W X||_F, ||A0 X||_F^2 = <A0 C, A0>: the first,
///            tighter inequality.
/// Every product runs on the backend (the n x n C stays where it is).
struct InitialKnowledgeReport {
    double energy = 0;
    double bound = 0;
    double tight = 0;
};

///
/// Cost: one n x n x r product (C Q); with A0 = R Q^T (R = A0 Q, r x r, exact
/// as Q spans A0's rows) ||A0 X||^2 / c = tr(R G R^T) and ||A0||_2 = ||R||_2
/// follow from G = Q^T C Q at O(r^3). ||W X||^2 / c = <W C, W> costs m n^2
/// unless the caller measured it during the forward pass (out_energy >= 0:
/// BlockCalibration::output_energy).
template <class Bk, class M>
InitialKnowledgeReport initial_knowledge_report(Bk& b, const M& w, const M& a0, double scale, const M& c,
                                                double out_energy = -1) {
    const char* where = "initial_knowledge_report";
    require(c.rows() == c.cols() && c.rows() == w.cols() && a0.cols() == w.cols(), where, "W is ",
            shape_string(w.rows(), w.cols()), ", A0 is ", shape_string(a0.rows(), a0.cols()), ", C is ",
            shape_string(c.rows(), c.cols()), " (need C n x n for W m x n, A0 r x n)");
    const M q = b.thin_q(b.transpose(a0));                       // n x r
    const M g = product(b, q, product(b, c, q), Op::transpose);  // r x r: Q^T C Q
    const M r_factor = product(b, a0, q);                        // r x r: A0 = R Q^T
    const double seen = std::max(0.0, double(b.trace(g)));       // tr(Q^T C Q)
    const double total = double(b.trace(c));
    const double a_norm = detail::spectral_norm(b, r_factor);
    if (out_energy < 0) out_energy = double(b.dot(product(b, w, c), w));  // ||W X||^2 / c
    out_energy = std::max(0.0, out_energy);
    const double adapter_energy =  // ||A0 X||^2 / c = tr(R G R^T)
        std::max(0.0, double(b.trace(product(b, product(b, r_factor, g), r_factor, Op::none, Op::transpose))));
    const double s = std::abs(scale);
    InitialKnowledgeReport r;
    r.energy = total > 0 ? seen / total : 0.0;
    r.bound = out_energy > 0 ? s * a_norm * std::sqrt(seen / out_energy) : 0.0;
    r.tight = out_energy > 0 ? s * std::sqrt(adapter_energy / out_energy) : 0.0;
    return r;
}

}  // namespace loranull
