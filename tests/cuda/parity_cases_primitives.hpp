#pragma once
// Parity cases, part 1: storage, products, elementwise work and reductions
// (see parity_table.hpp for what a case is and how its tolerance is stated).

#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "parity_inputs.hpp"

namespace parity {

template <class T>
double eps() {
    return std::numeric_limits<T>::epsilon();
}

/// Copies and single roundings: exact on both backends.
struct Storage {
    static constexpr const char* title =
        "storage: round trip, zeros, block, set_block, transpose, select_columns, convert are exact";
    template <class T>
    struct Item {
        std::string label;
        HostMatrix<T> h, piece;  // rows x cols; the set_block piece is rows_b x cols_b
        Index r0, c0, rows_b, cols_b;
        std::vector<Index> which;
    };
    template <class T>
    struct Result {
        HostMatrix<T> round_trip, zeros, block, set_block, transpose, select;
        HostMatrix<double> to_double;
        HostMatrix<float> to_float;
        Index empty_block_cols = -1, empty_select_cols = -1, empty_round_trip_cols = -1;
    };
    template <class T, class Bk>
    static std::vector<Item<T>> items(Bk&) {
        std::vector<Item<T>> out;
        for (auto [rows, cols] : {std::pair<Index, Index>{1, 1}, {7, 5}, {33, 130}}) {
            const Index r0 = rows / 2, c0 = cols / 3, rb = rows - r0, cb = (cols - c0 + 1) / 2;
            out.push_back({std::to_string(rows) + " x " + std::to_string(cols), gaussian<T>(rows, cols, 1 + rows),
                           gaussian<T>(rb, cb, 99), r0, c0, rb, cb, {cols - 1, 0, cols - 1}});
        }
        return out;
    }
    template <class T, class Bk>
    static Result<T> run(Bk& b, const Item<T>& in) {
        Result<T> r;
        const auto d = b.upload(in.h);
        r.round_trip = b.download(d);
        r.zeros = b.download(b.template zeros<T>(in.h.rows(), in.h.cols()));
        r.block = b.download(b.block(d, in.r0, in.c0, in.rows_b, in.cols_b));
        r.empty_block_cols = b.block(d, 0, 0, in.h.rows(), 0).cols();
        auto s = b.upload(in.h);
        b.set_block(s, in.r0, in.c0, b.upload(in.piece));
        r.set_block = b.download(s);
        r.transpose = b.download(b.transpose(d));
        r.select = b.download(b.select_columns(d, in.which));
        r.empty_select_cols = b.select_columns(d, {}).cols();
        r.to_double = b.download(b.template convert<double>(d));
        r.to_float = b.download(b.template convert<float>(d));
        r.empty_round_trip_cols = b.download(b.upload(HostMatrix<T>(0, 3))).cols();
        return r;
    }
    template <class T, class Check>
    static void check(Check& c, const Item<T>& in, const Result<T>& got, const Result<T>& expected) {
        c.that("round trip", got.round_trip == in.h);
        c.that("zeros", got.zeros == HostMatrix<T>(in.h.rows(), in.h.cols()));
        c.that("block", got.block == expected.block);
        c.that("empty block", got.empty_block_cols == 0);
        c.that("set_block", got.set_block == expected.set_block);
        c.that("transpose", got.transpose == expected.transpose);
        c.that("select_columns", got.select == expected.select);
        c.that("select no columns", got.empty_select_cols == 0);
        c.that("convert<double>", got.to_double == expected.to_double);
        c.that("convert<float>", got.to_float == expected.to_float);
        c.that("0 x 3 round trip", got.empty_round_trip_cols == 3);
    }
};

/// alpha op(A) op(B) + beta C: different summation orders (and FMA), BLAS's
/// k eps bound twice, 4 (k + 2) eps relative to the norm of the terms.
struct Gemm {
    static constexpr const char* title = "gemm matches the CPU for every transpose combination and size";
    enum class Kind { product, nan_c_beta_zero, no_inner_terms };
    template <class T>
    struct Item {
        std::string label;
        Kind kind;
        Op op_a, op_b;
        T alpha, beta;
        HostMatrix<T> a, b, c;
    };
    template <class T>
    struct Result {
        HostMatrix<T> out;
    };
    template <class T, class Bk>
    static std::vector<Item<T>> items(Bk&) {
        std::vector<Item<T>> out;
        struct Shape {
            Index m, k, n;
        };
        for (Shape s : {Shape{1, 1, 1}, Shape{7, 5, 3}, Shape{33, 7, 130}, Shape{64, 65, 17}})
            for (Op op_a : {Op::none, Op::transpose})
                for (Op op_b : {Op::none, Op::transpose})
                    out.push_back({std::to_string(s.m) + " x " + std::to_string(s.k) + " x " + std::to_string(s.n) +
                                       (op_a == Op::none ? " N" : " T") + (op_b == Op::none ? "N" : "T"),
                                   Kind::product, op_a, op_b, T(0.5), T(-2),
                                   op_a == Op::none ? gaussian<T>(s.m, s.k, 1) : gaussian<T>(s.k, s.m, 1),
                                   op_b == Op::none ? gaussian<T>(s.k, s.n, 2) : gaussian<T>(s.n, s.k, 2),
                                   gaussian<T>(s.m, s.n, 3)});
        // beta = 0 ignores the old contents, NaN included; k = 0 scales by beta.
        out.push_back({"beta 0 over NaN", Kind::nan_c_beta_zero, Op::none, Op::none, T(1), T(0), gaussian<T>(4, 3, 4),
                       gaussian<T>(3, 2, 5), HostMatrix<T>(4, 2, std::numeric_limits<T>::quiet_NaN())});
        out.push_back({"k = 0", Kind::no_inner_terms, Op::none, Op::none, T(1), T(0.5), HostMatrix<T>(7, 0),
                       HostMatrix<T>(0, 5), gaussian<T>(7, 5, 6)});
        return out;
    }
    template <class T, class Bk>
    static Result<T> run(Bk& b, const Item<T>& in) {
        auto out = b.upload(in.c);
        b.gemm(in.op_a, in.op_b, in.alpha, b.upload(in.a), b.upload(in.b), in.beta, out);
        return {b.download(out)};
    }
    template <class T, class Check>
    static void check(Check& c, const Item<T>& in, const Result<T>& got, const Result<T>& expected) {
        if (in.kind == Kind::nan_c_beta_zero) {
            c.that("beta = 0 reads no NaN", loranull::all_finite(got.out.data(), got.out.size()));
        } else if (in.kind == Kind::no_inner_terms) {
            c.that("k = 0: beta C", got.out == expected.out);
        } else {
            const Index k = in.op_a == Op::none ? in.a.cols() : in.a.rows();
            const double scale = std::abs(double(in.alpha)) * c.norm(in.a) * c.norm(in.b) +
                                 std::abs(double(in.beta)) * c.norm(in.c);
            c.below("gemm", c.scaled(got.out, expected.out, scale), 4 * double(k + 2) * eps<T>());
        }
    }
};

/// C_lower += alpha X X^T in X's type Tx (T, or the other precision when
/// Mixed), C (and the tolerance) in T: 4 (k + 2) eps(T) relative to the terms;
/// the strictly upper triangle untouched, exactly.
template <bool Mixed>
struct SyrkLowerOf {
    static constexpr const char* title =
        Mixed ? "syrk_lower, mixed precision: activations of the other precision into a T accumulator"
              : "syrk_lower: lower triangle matches the CPU and the strictly upper one is untouched, symmetrize_lower exact";
    template <class T>
    using X = std::conditional_t<!Mixed, T, std::conditional_t<std::is_same_v<T, float>, double, float>>;
    template <class T>
    struct Item {
        std::string label;
        T alpha;
        HostMatrix<X<T>> x;  // n x k
        HostMatrix<T> c;     // n x n, the accumulator's old contents
    };
    template <class T>
    struct Result {
        HostMatrix<T> out, symmetrized;  // symmetrized: symmetrize_lower(c)
    };
    template <class T, class Bk>
    static std::vector<Item<T>> items(Bk&) {
        std::vector<Item<T>> out;
        for (Index n : {1, 7, 130}) {
            if constexpr (Mixed) {
                // 5000 tokens at n = 130: more than one conversion panel.
                const Index k = n == 130 ? 5000 : 33;
                out.push_back({"n " + std::to_string(n) + ", k " + std::to_string(k), T(1.5),
                               gaussian<X<T>>(n, k, 20 + n), gaussian<T>(n, n, 21)});
            } else {
                for (Index k : {1, 33})
                    out.push_back({"n " + std::to_string(n) + ", k " + std::to_string(k), T(0.25),
                                   gaussian<T>(n, k, 10 + n), gaussian<T>(n, n, 11)});
            }
        }
        if constexpr (!Mixed) out.push_back({"no tokens", T(1), HostMatrix<T>(3, 0), gaussian<T>(3, 3, 12)});
        return out;
    }
    template <class T, class Bk>
    static Result<T> run(Bk& b, const Item<T>& in) {
        auto out = b.upload(in.c);
        b.syrk_lower(in.alpha, b.upload(in.x), out);
        auto sym = b.upload(in.c);
        b.symmetrize_lower(sym);
        return {b.download(out), b.download(sym)};
    }
    template <class T, class Check>
    static void check(Check& c, const Item<T>& in, const Result<T>& got, const Result<T>& expected) {
        if (in.x.cols() == 0) {
            c.that("no tokens: nothing changes", got.out == in.c);
            return;
        }
        const double scale = std::abs(double(in.alpha)) * c.norm(in.x) * c.norm(in.x) + c.norm(in.c);
        c.below("lower triangle", c.scaled(c.lower(got.out), c.lower(expected.out), scale),
                4 * double(in.x.cols() + 2) * eps<T>());
        c.that("strictly upper untouched", c.strictly_upper(got.out) == c.strictly_upper(in.c));
        if constexpr (!Mixed) c.that("symmetrize_lower", got.symmetrized == expected.symmetrized);
    }
};
using SyrkLower = SyrkLowerOf<false>;
using SyrkLowerMixed = SyrkLowerOf<true>;

/// Elementwise work is exact (one rounding both sides) but for axpy (FMA or
/// not: an ulp of alpha a per entry); reductions sum in another order:
/// 4 n eps relative to the sum of the magnitudes.
/// Covariance's fp32 panels: add_lower (a float panel into a double sum, lower
/// triangle only) and sum_of_squares (accumulated in double).
struct AddLowerSumOfSquares {
    static constexpr const char* title = "add_lower and sum_of_squares match the CPU";
    template <class T>
    struct Item {
        std::string label;
        HostMatrix<float> panel;
        HostMatrix<T> sum;
    };
    template <class T>
    struct Result {
        HostMatrix<T> sum;
        double squares = 0;
    };
    template <class T, class Bk>
    static std::vector<Item<T>> items(Bk&) {
        std::vector<Item<T>> out;
        for (Index n : {1, 7, 130})
            out.push_back({"n " + std::to_string(n), gaussian<float>(n, n, 40 + n), gaussian<T>(n, n, 41 + n)});
        return out;
    }
    template <class T, class Bk>
    static Result<T> run(Bk& b, const Item<T>& in) {
        Result<T> r;
        auto sum = b.upload(in.sum);
        b.add_lower(b.upload(in.panel), sum);
        r.sum = b.download(sum);
        r.squares = b.sum_of_squares(b.upload(in.panel));
        return r;
    }
    template <class T, class Check>
    static void check(Check& c, const Item<T>& in, const Result<T>& got, const Result<T>& expected) {
        c.that("add_lower: one rounding per entry, the upper triangle untouched", got.sum == expected.sum);
        const double n = double(in.panel.size());
        c.below("sum_of_squares", std::abs(got.squares - expected.squares) / std::max(expected.squares, 1e-300),
                4 * std::sqrt(n) * eps<float>());
    }
};

struct Elementwise {
    static constexpr const char* title = "elementwise work and reductions match the CPU";
    enum class Kind { square, wide, nonfinite, empty, negative };
    template <class T>
    struct Item {
        std::string label;
        Kind kind;
        HostMatrix<T> a, b;  // b: axpy's out (square only)
    };
    template <class T>
    struct Result {
        HostMatrix<T> scale, axpy, scale_columns, scale_rows, add_to_diagonal;
        double trace = 0, max_coeff = 0, frobenius_norm = 0, dot = 0;
        bool all_finite = false;
    };
    template <class T>
    static std::vector<T> factors(Index n) {
        std::vector<T> f(static_cast<std::size_t>(n));
        for (Index j = 0; j < n; ++j) f[static_cast<std::size_t>(j)] = T(0.5) + T(j);
        return f;
    }
    template <class T, class Bk>
    static std::vector<Item<T>> items(Bk&) {
        std::vector<Item<T>> out;
        for (Index n : {1, 7, 130})
            out.push_back({"n " + std::to_string(n), Kind::square, gaussian<T>(n, n, 30 + n), gaussian<T>(n, n, 31 + n)});
        // A wide, non-square matrix: add_to_diagonal on min(rows, cols) entries.
        out.push_back({"3 x 8", Kind::wide, gaussian<T>(3, 8, 33), {}});
        // all_finite sees NaN and +-Inf anywhere; an empty matrix is finite.
        for (T bad : {std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity(),
                      -std::numeric_limits<T>::infinity()})
            for (Index at : {Index(0), Index(17), Index(7 * 9 - 1)}) {
                HostMatrix<T> m = gaussian<T>(7, 9, 34);
                m.data()[at] = bad;
                out.push_back({std::to_string(double(bad)) + " at " + std::to_string(at), Kind::nonfinite, m, {}});
            }
        out.push_back({"0 x 4", Kind::empty, HostMatrix<T>(0, 4), {}});
        // max_coeff is the signed maximum.
        HostMatrix<T> negative(4, 4, T(-3));
        negative(2, 1) = T(-0.5);
        out.push_back({"all negative", Kind::negative, negative, {}});
        return out;
    }
    template <class T, class Bk>
    static Result<T> run(Bk& b, const Item<T>& in) {
        Result<T> r;
        const auto a = b.upload(in.a);
        if (in.kind == Kind::square) {
            auto m = a;
            b.scale(T(-1.75), m);
            r.scale = b.download(m);
            m = b.upload(in.b);
            b.axpy(T(0.3), a, m);
            r.axpy = b.download(m);
            const auto f = factors<T>(in.a.cols());
            m = a;
            b.scale_columns(m, f);
            r.scale_columns = b.download(m);
            m = a;
            b.scale_rows(m, f);
            r.scale_rows = b.download(m);
            m = a;
            b.add_to_diagonal(m, T(3));
            r.add_to_diagonal = b.download(m);
            r.trace = double(b.trace(a));
            r.max_coeff = double(b.max_coeff(a));
            r.frobenius_norm = double(b.frobenius_norm(a));
            r.dot = double(b.dot(a, b.upload(in.b)));
        } else if (in.kind == Kind::wide) {
            auto m = a;
            b.add_to_diagonal(m, T(-1));
            r.add_to_diagonal = b.download(m);
        } else if (in.kind == Kind::negative) {
            r.max_coeff = double(b.max_coeff(a));
        }
        r.all_finite = b.all_finite(a);
        return r;
    }
    template <class T, class Check>
    static void check(Check& c, const Item<T>& in, const Result<T>& got, const Result<T>& expected) {
        switch (in.kind) {
            case Kind::square: {
                const double n = double(in.a.rows());
                c.that("scale", got.scale == expected.scale);
                c.at_most("axpy", c.scaled(got.axpy, expected.axpy, 0.3 * c.norm(in.a) + c.norm(in.b)), 2 * eps<T>());
                c.that("scale_columns", got.scale_columns == expected.scale_columns);
                c.that("scale_rows", got.scale_rows == expected.scale_rows);
                c.that("add_to_diagonal", got.add_to_diagonal == expected.add_to_diagonal);
                double diagonal = 0;
                for (Index i = 0; i < in.a.rows(); ++i) diagonal += std::abs(double(in.a(i, i)));
                c.at_most("trace", std::abs(got.trace - expected.trace), 4 * n * eps<T>() * std::max(1.0, diagonal));
                c.that("max_coeff", got.max_coeff == expected.max_coeff);
                c.at_most("frobenius_norm", std::abs(got.frobenius_norm - expected.frobenius_norm),
                          4 * n * eps<T>() * expected.frobenius_norm);
                double products = 0;  // sum |a_ij b_ij|: the scale of dot's rounding
                for (Index k = 0; k < in.a.size(); ++k) products += std::abs(double(in.a.data()[k]) * double(in.b.data()[k]));
                c.at_most("dot", std::abs(got.dot - expected.dot), 2 * n * n * eps<T>() * products);
                c.that("all_finite", got.all_finite);
                break;
            }
            case Kind::wide: c.that("add_to_diagonal", got.add_to_diagonal == expected.add_to_diagonal); break;
            case Kind::nonfinite: c.that("all_finite sees it", !got.all_finite && !expected.all_finite); break;
            case Kind::empty: c.that("empty is finite", got.all_finite); break;
            case Kind::negative: c.that("signed maximum", got.max_coeff == -0.5); break;
        }
    }
};

}  // namespace parity
