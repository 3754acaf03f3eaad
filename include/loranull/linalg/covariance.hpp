#pragma once
// Covariance<B, T>: streaming accumulator of the uncentred second moment of a
// layer's input activations (SPEC.md section 1),
//
//     C = sum_k (X_k / c_k)(X_k / c_k)^T / normaliser          (n x n, PSD)
//
// where X_k (n x T_k, one column per token) is the k-th calibration sample.
// Two normalisations:
//   plain      c_k = 1, normaliser = total tokens (a mean; what PEFT's CorDA
//              and the loranull-init tool use);
//   reference  c_k = |max_ij X_k,ij| (the *signed* maximum, then its absolute
//              value, as the official LoRA-Null/CorDA code does), normaliser =
//              a constant (256 there), not the sample count.
// Both span the same subspace; the reference one re-weights samples, which can
// change which directions count as least used, so the choice is recorded.
//
// The accumulator keeps the raw sum S = sum_k X_k X_k^T / c_k^2 in the lower
// triangle (a symmetric rank update, half the flops of X X^T, never a general
// product) in T = double by default, whatever the activations' type. Sums over
// disjoint data add up: `merge` is what makes calibration parallel.

#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "loranull/backend/backend.hpp"
#include "loranull/core/error.hpp"

namespace loranull {

enum class Normalisation {
    plain,      // c_k = 1, C = S / tokens
    reference,  // c_k = |max X_k|, C = S / reference_divisor
};

/// "plain" or "reference" (the names used in files).
inline std::string_view normalisation_name(Normalisation n) {
    return n == Normalisation::plain ? "plain" : "reference";
}

inline Normalisation parse_normalisation(std::string_view name) {
    if (name == "plain") return Normalisation::plain;
    if (name == "reference") return Normalisation::reference;
    fail("parse_normalisation", "unknown normalisation '", name, "' (expected plain or reference)");
}

/// How float activations reach the double sum (docs/math.md, "accumulation"):
///   fp64         each panel converted to double, then a double rank update
///                (?dsyrk): every product exact, half the speed of ?ssyrk;
///   fp32_panels  each add's X X^T formed in float (?ssyrk, full speed) and
///                added to the double sum: each entry of a panel is a float
///                sum of T = X.cols() products, off by ~eps_f sqrt(T) times a
///                typical product, and nothing is carried from one panel to
///                the next in float.
/// Only float activations into a double sum have a choice: double ones are
/// exact either way, and 16-bit ones (the GPU) go to their own route.
enum class Accumulation { fp64, fp32_panels };

/// "fp64" or "fp32-panels" (the names used in options and files).
inline std::string_view accumulation_name(Accumulation a) { return a == Accumulation::fp64 ? "fp64" : "fp32-panels"; }

inline Accumulation parse_accumulation(std::string_view name) {
    if (name == "fp64") return Accumulation::fp64;
    if (name == "fp32-panels") return Accumulation::fp32_panels;
    fail("parse_accumulation", "unknown accumulation '", name, "' (expected fp64 or fp32-panels)");
}

/// Everything recorded beside the sum.
struct CovarianceInfo {
    Normalisation normalisation = Normalisation::plain;
    double reference_divisor = 256.0;  // used by Normalisation::reference only
    std::string data_id;               // the caller's name for the calibration data
    std::int64_t tokens = 0;           // columns seen
    std::int64_t samples = 0;          // add() calls (or samples of add_samples)

    bool operator==(const CovarianceInfo&) const = default;
};

template <class Bk, Real T = double>
class Covariance {
public:
    using Matrix = matrix_t<Bk, T>;
    using Scalar = T;

    /// An empty accumulator for n-dimensional activations.
    Covariance(Bk& backend, Index dim, Normalisation normalisation = Normalisation::plain,
               std::string data_id = {}, double reference_divisor = 256.0)
        : backend_(&backend), sum_(zeros<T>(backend, checked_dim(dim), dim)) {
        info_.normalisation = normalisation;
        info_.data_id = std::move(data_id);
        info_.reference_divisor = reference_divisor;
        check_divisor();
    }

    /// An accumulator resumed from a saved raw sum (lower triangle read) and its
    /// info; what io/covariance_file.hpp's load returns.
    Covariance(Bk& backend, Matrix raw_sum, CovarianceInfo info)
        : backend_(&backend), sum_(std::move(raw_sum)), info_(std::move(info)) {
        const char* where = "Covariance::Covariance";
        require(sum_.rows() == sum_.cols() && sum_.rows() > 0, where, "raw sum is ",
                shape_string(sum_.rows(), sum_.cols()), ", expected square and non-empty");
        require(info_.tokens >= 0 && info_.samples >= 0 && info_.samples <= info_.tokens, where,
                "inconsistent counts: ", info_.tokens, " tokens, ", info_.samples, " samples");
        require(backend_->all_finite(sum_), where, "raw sum holds NaN or Inf");
        check_divisor();
    }

    /// Adds one calibration sample X (n x tokens, float or double). With the
    /// reference normalisation the sample is scaled by 1 / |max X| first.
    template <class M>
        requires std::same_as<M, matrix_t<Bk, typename M::Scalar>>
    void add(const M& x) {
        const char* where = "Covariance::add";
        check_batch(x, where);
        if (x.cols() == 0) return;
        add_products(x, 1, where);
        info_.tokens += x.cols();
        info_.samples += 1;
    }

    /// Adds a batch of samples laid side by side: X is n x (samples *
    /// tokens_per_sample). Equivalent to add() on each block of columns; with
    /// the plain normalisation it is one rank update. Returns each sample's
    /// c_k^2 (all 1 with the plain normalisation).
    template <class M>
        requires std::same_as<M, matrix_t<Bk, typename M::Scalar>>
    std::vector<double> add_samples(const M& x, Index tokens_per_sample) {
        const char* where = "Covariance::add_samples";
        check_batch(x, where);
        require(tokens_per_sample > 0 && x.cols() % tokens_per_sample == 0, where, "X has ", x.cols(),
                " columns, not a positive multiple of tokens_per_sample = ", tokens_per_sample);
        const Index count = x.cols() / tokens_per_sample;
        std::vector<double> scales = add_products(x, count, where);
        info_.tokens += x.cols();
        info_.samples += count;
        return scales;
    }

    /// How float activations are accumulated (fp64 unless set; a loaded
    /// accumulator keeps what its file records).
    Accumulation accumulation() const { return accumulation_; }
    void set_accumulation(Accumulation a) { accumulation_ = a; }

    /// The unit roundoff of the sum's products: float's with fp32_panels,
    /// else T's. The null space's zero tolerance scales with it (rounding
    /// leaves eigenvalues of that relative size, of either sign).
    double epsilon() const {
        return accumulation_ == Accumulation::fp32_panels ? double(std::numeric_limits<float>::epsilon())
                                                          : double(std::numeric_limits<T>::epsilon());
    }

    /// Adds the sums of another accumulator over disjoint data (threads, GPUs,
    /// ranks). Both must have the same size and normalisation; differing data
    /// ids are joined with '+'.
    void merge(const Covariance& other) {
        const char* where = "Covariance::merge";
        require(other.dim() == dim(), where, "dimensions differ: ", dim(), " and ", other.dim());
        require(other.info_.normalisation == info_.normalisation &&
                    (info_.normalisation == Normalisation::plain ||
                     other.info_.reference_divisor == info_.reference_divisor),
                where, "normalisations differ: ", describe_normalisation(info_), " and ",
                describe_normalisation(other.info_));
        backend_->axpy(T(1), other.sum_, sum_);
        info_.tokens += other.info_.tokens;
        info_.samples += other.info_.samples;
        if (other.info_.data_id != info_.data_id) {
            info_.data_id = info_.data_id.empty() ? other.info_.data_id
                            : other.info_.data_id.empty() ? info_.data_id
                                                          : info_.data_id + "+" + other.info_.data_id;
        }
    }

    /// The same over processes: sums every rank's accumulator onto rank
    /// `root` of `comm` (a parallel::Communicator; every rank calls this, in
    /// the same order, with the same root and size). Afterwards root holds the
    /// accumulator of all the ranks' data and every rank holds the total
    /// counts; the other ranks' sums are unspecified.
    template <class Comm>
    void sum_to(Comm& comm, int root) {
        comm.sum_to(*backend_, sum_, root);
        std::int64_t counts[2] = {info_.tokens, info_.samples};
        comm.sum(std::span<std::int64_t>(counts, 2));
        info_.tokens = counts[0];
        info_.samples = counts[1];
    }

    /// C itself: the full symmetric n x n matrix, normalised. Throws when nothing
    /// was added.
    Matrix matrix() const {
        require(!empty(), "Covariance::matrix", "no activations were added (empty accumulator of dim ", dim(),
                ")");
        Matrix c = sum_;
        backend_->symmetrize_lower(c);
        backend_->scale(T(1) / static_cast<T>(normaliser()), c);
        return c;
    }

    /// The divisor of the raw sum: tokens (plain) or reference_divisor.
    double normaliser() const {
        return info_.normalisation == Normalisation::plain ? static_cast<double>(info_.tokens)
                                                           : info_.reference_divisor;
    }

    /// S = sum_k X_k X_k^T / c_k^2, lower triangle only (the upper one is
    /// unspecified): what save() writes, merge() adds and matrix() normalises.
    const Matrix& raw_sum_lower() const { return sum_; }

    Index dim() const { return sum_.rows(); }
    std::int64_t tokens() const { return info_.tokens; }
    std::int64_t samples() const { return info_.samples; }
    bool empty() const { return info_.tokens == 0; }
    Normalisation normalisation() const { return info_.normalisation; }
    const std::string& data_id() const { return info_.data_id; }
    const CovarianceInfo& info() const { return info_; }
    Bk& backend() const { return *backend_; }

private:
    static Index checked_dim(Index dim) {
        require(dim > 0, "Covariance::Covariance", "dimension must be positive, got ", dim);
        return dim;
    }

    void check_divisor() const {
        require(std::isfinite(info_.reference_divisor) && info_.reference_divisor > 0, "Covariance",
                "reference_divisor must be finite and positive, got ", info_.reference_divisor);
    }

    static std::string describe_normalisation(const CovarianceInfo& info) {
        return info.normalisation == Normalisation::plain
                   ? std::string("plain")
                   : "reference (divisor " + std::to_string(info.reference_divisor) + ")";
    }

    template <class M>
    void check_batch(const M& x, const char* where) const {
        require(x.rows() == dim(), where, "X has ", x.rows(), " rows, expected ", dim(), " (X is ",
                shape_string(x.rows(), x.cols()), ")");
        require(backend_->all_finite(x), where, "X (", shape_string(x.rows(), x.cols()), ") holds NaN or Inf");
    }

    /// sum_ += sum_k X_k X_k^T / c_k^2 over the `count` samples side by side
    /// in X: one rank update (plain) or one per sample (reference), in the
    /// accumulator's type, or formed in float and then added (fp32_panels).
    /// Returns each sample's c_k^2.
    template <class M>
    std::vector<double> add_products(const M& x, Index count, const char* where) {
        using Tx = typename M::Scalar;
        const Index width = x.cols() / count;
        std::vector<double> scales(static_cast<std::size_t>(count), 1.0);
        auto update = [&](auto& out) {
            using To = typename std::decay_t<decltype(out)>::Scalar;
            if (info_.normalisation == Normalisation::plain) {
                backend_->syrk_lower(To(1), x, out);
                return;
            }
            auto one = [&](const M& sample, Index k) {
                const T c2 = squared_scale(sample, where);
                scales[static_cast<std::size_t>(k)] = static_cast<double>(c2);
                backend_->syrk_lower(static_cast<To>(T(1) / c2), sample, out);
            };
            if (count == 1) one(x, 0);  // no copy of a lone sample
            else
                for (Index k = 0; k < count; ++k) one(backend_->block(x, 0, k * width, x.rows(), width), k);
        };
        if constexpr (std::is_same_v<Tx, float> && std::is_same_v<T, double>) {
            if (accumulation_ == Accumulation::fp32_panels) {
                matrix_t<Bk, Tx> panel = zeros<Tx>(*backend_, dim(), dim());  // lower triangle: this add's products
                update(panel);
                require(backend_->all_finite(panel), where, "X X^T overflows float",
                        " (largest activation ", backend_->max_coeff(x), "); use the fp64 accumulation");
                backend_->add_lower(panel, sum_);
                return scales;
            }
        }
        update(sum_);
        return scales;
    }

    /// c_k^2 for one sample: 1 (plain) or max(X)^2 (reference).
    template <class M>
    T squared_scale(const M& x, const char* where) const {
        if (info_.normalisation == Normalisation::plain) return T(1);
        const T c = static_cast<T>(std::abs(backend_->max_coeff(x)));
        require(c > T(0), where, "the reference normalisation divides by |max X| and max X is 0 (X is ",
                shape_string(x.rows(), x.cols()), ")");
        return c * c;
    }

    Bk* backend_;       // not owned; outlives the accumulator
    Matrix sum_;       // n x n, lower triangle = sum_k X_k X_k^T / c_k^2
    CovarianceInfo info_;
    Accumulation accumulation_ = Accumulation::fp64;
};

}  // namespace loranull
