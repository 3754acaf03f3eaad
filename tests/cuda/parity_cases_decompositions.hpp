#pragma once
// Parity cases, part 2: the decomposition primitives (see parity_table.hpp).
// Eigen/singular values: 10 n eps relative to ||C||; vectors: 10 n eps ||C|| /
// gap (the Davis-Kahan scale), compared column by column (distinct values) or
// as subspaces; plus the invariants of the device's own results.

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <loranull/linalg/covariance.hpp>
#include <loranull/linalg/symmetric_eigen.hpp>

#include "parity_cases_primitives.hpp"

namespace parity {

/// Eigenpairs or singular triplets brought to the host.
template <class T>
struct Pairs {
    std::vector<T> values;
    HostMatrix<T> vectors;  // n x k
};
template <class T>
struct SvdTriplets {
    HostMatrix<T> U;
    std::vector<T> singular_values;
    HostMatrix<T> V;
};
template <class Bk, class E>
auto host_pairs(Bk& b, const E& e) {
    return Pairs<typename decltype(e.values)::value_type>{e.values, b.download(e.vectors)};
}
template <class Bk, class S>
auto host_triplets(Bk& b, const S& s) {
    return SvdTriplets<typename decltype(s.singular_values)::value_type>{b.download(s.U), s.singular_values,
                                                                      b.download(s.V)};
}

struct SymmetricEigen {
    static constexpr const char* title = "symmetric_eigen matches the CPU: values, vectors, C V = V D, orthonormal";
    template <class T>
    struct Item {
        std::string label;
        HostMatrix<T> c;  // n x n, eigenvalues 1 - n/3, ..., n - n/3 (indefinite, gap 1)
    };
    template <class T>
    using Result = Pairs<T>;
    template <class T, class Bk>
    static std::vector<Item<T>> items(Bk& b) {
        std::vector<Item<T>> out;
        for (Index n : {1, 2, 7, 33, 130})
            out.push_back({"n " + std::to_string(n),
                           symmetric_with_spectrum<T>(b, spaced_spectrum(n, -double(n) / 3), 40 + n)});
        return out;
    }
    template <class T, class Bk>
    static Result<T> run(Bk& b, const Item<T>& in) {
        return host_pairs(b, b.symmetric_eigen(b.upload(in.c)));
    }
    template <class T, class Check>
    static void check(Check& c, const Item<T>& in, const Result<T>& got, const Result<T>& expected) {
        const Index n = in.c.rows();
        c.require("n values", got.values.size() == std::size_t(n));
        c.that("ascending", std::is_sorted(got.values.begin(), got.values.end()));
        const double norm = double(n);  // ||C||_2 <= n, gap 1
        const double unit = 10 * double(n) * eps<T>();
        c.below("values", c.abs_values(got.values, expected.values), unit * norm);
        c.below("vectors", c.columns(got.vectors, expected.vectors), unit * norm);
        c.below("C V = V D", c.eigen_residual(in.c, got.vectors, got.values), unit);
        c.below("orthonormal", c.orthonormality(got.vectors), unit);
    }
};

struct SymmetricEigenRange {
    static constexpr const char* title = "symmetric_eigen_range matches the CPU for any index range";
    template <class T>
    struct Item {
        std::string label;
        HostMatrix<T> c;  // eigenvalues 1, ..., n (gap 1)
        Index first, count;
    };
    template <class T>
    using Result = Pairs<T>;
    template <class T, class Bk>
    static std::vector<Item<T>> items(Bk& b) {
        std::vector<Item<T>> out;
        for (Index n : {1, 7, 33, 130}) {
            const HostMatrix<T> c = symmetric_with_spectrum<T>(b, spaced_spectrum(n), 50 + n);
            for (auto [first, count] : {std::pair<Index, Index>{0, 1}, {0, std::min<Index>(5, n)}, {n - 1, 1},
                                        {n / 3, n / 2}, {0, n}, {n / 2, 0}})
                out.push_back({"n " + std::to_string(n) + ", pairs " + std::to_string(first) + " + " +
                                   std::to_string(count),
                               c, first, count});
        }
        return out;
    }
    template <class T, class Bk>
    static Result<T> run(Bk& b, const Item<T>& in) {
        return host_pairs(b, b.symmetric_eigen_range(b.upload(in.c), in.first, in.count));
    }
    template <class T, class Check>
    static void check(Check& c, const Item<T>& in, const Result<T>& got, const Result<T>& expected) {
        const Index n = in.c.rows();
        c.require("count values", got.values.size() == std::size_t(in.count));
        c.require("n rows", got.vectors.rows() == n);
        c.require("count columns", got.vectors.cols() == in.count);
        if (in.count == 0) return;
        const double norm = double(n), unit = 10 * double(n) * eps<T>();
        c.below("values", c.abs_values(got.values, expected.values), unit * norm);
        c.below("subspace", c.projector(got.vectors, expected.vectors), 2 * unit * norm);  // / gap = 1
        c.below("C V = V D", c.eigen_residual(in.c, got.vectors, got.values), unit);
    }
};

struct ThinSvd {
    static constexpr const char* title = "thin_svd matches the CPU on tall, wide and square matrices";
    template <class T>
    struct Item {
        std::string label;
        HostMatrix<T> a;  // m x n, singular values p, p - 1, ..., 1 (gap 1)
    };
    template <class T>
    using Result = SvdTriplets<T>;
    template <class T, class Bk>
    static std::vector<Item<T>> items(Bk& b) {
        std::vector<Item<T>> out;
        for (auto [m, n] : {std::pair<Index, Index>{1, 1}, {1, 7}, {7, 1}, {33, 7}, {7, 33}, {40, 40}, {130, 33}}) {
            std::vector<double> sv = spaced_spectrum(std::min(m, n));
            std::reverse(sv.begin(), sv.end());
            out.push_back({std::to_string(m) + " x " + std::to_string(n),
                           matrix_with_singular_values<T>(b, m, n, sv, 60 + m + n)});
        }
        return out;
    }
    template <class T, class Bk>
    static Result<T> run(Bk& b, const Item<T>& in) {
        return host_triplets(b, b.thin_svd(b.upload(in.a)));
    }
    template <class T, class Check>
    static void check(Check& c, const Item<T>& in, const Result<T>& got, const Result<T>& expected) {
        const Index m = in.a.rows(), n = in.a.cols(), p = std::min(m, n);
        c.require("U is m x p", got.U.rows() == m && got.U.cols() == p);
        c.require("V is n x p", got.V.rows() == n && got.V.cols() == p);
        c.require("p values", got.singular_values.size() == std::size_t(p));
        c.that("descending", std::is_sorted(got.singular_values.rbegin(), got.singular_values.rend()));
        c.that("non-negative", got.singular_values.back() >= T(0));
        const double norm = double(p), tol = 10 * double(m + n) * eps<T>();
        c.below("values (relative to sigma_1)", c.rel_values(got.singular_values, expected.singular_values), tol);
        c.below("U", c.columns(got.U, expected.U), tol * norm);
        c.below("V", c.columns(got.V, expected.V), tol * norm);
        c.below("U S V^T = A", c.reconstruction(got.U, got.singular_values, got.V, in.a), tol);
        c.below("U orthonormal", c.orthonormality(got.U), tol);
        c.below("V orthonormal", c.orthonormality(got.V), tol);
    }
};

struct ThinQ {
    static constexpr const char* title = "thin_q: an orthonormal basis of the same column space as the CPU's";
    template <class T>
    struct Item {
        std::string label;
        HostMatrix<T> a;  // Gaussian: cond < 10 at these sizes
    };
    template <class T>
    struct Result {
        HostMatrix<T> q;
    };
    template <class T, class Bk>
    static std::vector<Item<T>> items(Bk&) {
        std::vector<Item<T>> out;
        for (auto [m, n] : {std::pair<Index, Index>{1, 1}, {7, 3}, {3, 7}, {33, 33}, {130, 17}})
            out.push_back({std::to_string(m) + " x " + std::to_string(n), gaussian<T>(m, n, 70 + m)});
        return out;
    }
    template <class T, class Bk>
    static Result<T> run(Bk& b, const Item<T>& in) {
        return {b.download(b.thin_q(b.upload(in.a)))};
    }
    template <class T, class Check>
    static void check(Check& c, const Item<T>& in, const Result<T>& got, const Result<T>& expected) {
        c.require("m x min(m, n)", got.q.rows() == in.a.rows() && got.q.cols() == std::min(in.a.rows(), in.a.cols()));
        const double tol = 10 * double(in.a.rows() + in.a.cols()) * eps<T>();
        c.below("orthonormal", c.orthonormality(got.q), tol);
        c.below("column space", c.projector(got.q, expected.q), 10 * tol);
    }
};

/// Invariants of the device's own results, at a size where float must resolve
/// eigenvalues from 1 down to ~4e-4: C V = V D, orthonormal bases, the bottom
/// k below every other eigenvalue, U S V^T = A. The reference run is computed
/// too (the table runs both halves) but only the device's results are judged.
struct DeviceInvariants {
    static constexpr const char* title =
        "GPU invariants: C V = V D, orthonormal bases, the bottom k below every other eigenvalue";
    static constexpr Index n = 130, k = 8;
    template <class T>
    struct Item {
        std::string label;
        HostMatrix<T> c;  // n x n covariance, rows of the activations scaled by 0.97^i
        HostMatrix<T> a;  // 45 x 130 Gaussian
    };
    template <class T>
    struct Result {
        Pairs<T> all, bottom;
        SvdTriplets<T> svd;
        HostMatrix<T> q;
    };
    template <class T, class Bk>
    static std::vector<Item<T>> items(Bk& b) {
        loranull::Covariance<Bk, T> cov(b, n);
        cov.add(b.upload(activations<float>(b, n, 300, 150, 0.97)));
        return {{"n 130, k 8", b.download(cov.matrix()), gaussian<T>(45, 130, 151)}};
    }
    template <class T, class Bk>
    static Result<T> run(Bk& b, const Item<T>& in) {
        const auto c = b.upload(in.c);
        const auto a = b.upload(in.a);
        return {host_pairs(b, b.symmetric_eigen(c)), host_pairs(b, loranull::smallest_eigenpairs(b, c, k)),
                host_triplets(b, b.thin_svd(a)), b.download(b.thin_q(a))};
    }
    template <class T, class Check>
    static void check(Check& c, const Item<T>& in, const Result<T>& got, const Result<T>&) {
        const double tol = 10 * double(n) * eps<T>();
        c.below("C V = V D (all)", c.eigen_residual(in.c, got.all.vectors, got.all.values), tol);
        c.below("C V = V D (bottom)", c.eigen_residual(in.c, got.bottom.vectors, got.bottom.values), tol);
        c.below("orthonormal (all)", c.orthonormality(got.all.vectors), tol);
        c.below("orthonormal (bottom)", c.orthonormality(got.bottom.vectors), tol);
        // Ascending |lambda|, and the bottom k are the k smallest |lambda| of the
        // full decomposition: each at most the (k+1)-th smallest.
        const auto& bottom = got.bottom.values;
        for (std::size_t j = 1; j < bottom.size(); ++j)
            c.that("ascending |lambda|", std::abs(bottom[j - 1]) <= std::abs(bottom[j]));
        std::vector<double> magnitudes;
        for (T v : got.all.values) magnitudes.push_back(std::abs(double(v)));
        std::sort(magnitudes.begin(), magnitudes.end());
        const double slack = tol * magnitudes.back();
        for (std::size_t j = 0; j < std::size_t(k); ++j)
            c.at_most("bottom k are the smallest", std::abs(std::abs(double(bottom[j])) - magnitudes[j]), slack);
        c.at_most("below the rest", std::abs(double(bottom.back())), magnitudes[std::size_t(k)] + slack);
        c.below("U S V^T = A", c.reconstruction(got.svd.U, got.svd.singular_values, got.svd.V, in.a),
                10 * (45 + 130) * eps<T>());
        c.below("Q orthonormal", c.orthonormality(got.q), 10 * 45 * eps<T>());
    }
};

}  // namespace parity
