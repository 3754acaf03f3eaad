#pragma once
// Parity cases, part 3: the linalg algorithms, unchanged, instantiated on each
// backend (see parity_table.hpp): the covariance accumulator, the eigen and SVD
// algorithms, the null space.

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <loranull/linalg/covariance.hpp>
#include <loranull/linalg/null_space.hpp>
#include <loranull/linalg/svd.hpp>
#include <loranull/linalg/symmetric_eigen.hpp>

#include "parity_cases_decompositions.hpp"

namespace parity {

/// Sums of at most 185 tokens: 4 (185 + 2) eps relative.
struct CovarianceAccumulator {
    static constexpr const char* title =
        "Covariance add, add_samples, merge and the reference normalisation match the CPU";
    template <class T>
    struct Item {
        std::string label;
        std::vector<HostMatrix<float>> batches, others;  // n x (25 + b), n x 30
        HostMatrix<float> joined;                        // n x 100: 4 samples of 25 tokens
        HostMatrix<double> doubles;                      // n x 40: double activations into T
    };
    template <class T>
    struct Run {
        HostMatrix<T> matrix, raw_sum_lower;
        std::int64_t tokens = 0, samples = 0;
        std::string data_id;
    };
    template <class T>
    struct Result {
        Run<T> added[2], by_sample[2], merged, from_doubles;  // [0] plain, [1] reference normalisation
    };
    template <class T, class Bk>
    static std::vector<Item<T>> items(Bk&) {
        std::vector<Item<T>> out;
        for (Index n : {1, 7, 33}) {
            Item<T> item{"n " + std::to_string(n), {}, {}, gaussian<float>(n, 100, 95), gaussian<double>(n, 40, 97)};
            for (int b = 0; b < 4; ++b) item.batches.push_back(gaussian<float>(n, 25 + b, 80 + n + b));
            for (int b = 0; b < 2; ++b) item.others.push_back(gaussian<float>(n, 30, 90 + n + b));
            out.push_back(item);
        }
        return out;
    }
    template <class Bk, class T>
    static Run<T> run_of(Bk& b, const loranull::Covariance<Bk, T>& cov) {
        return {b.download(cov.matrix()), b.download(cov.raw_sum_lower()), cov.tokens(), cov.samples(), cov.data_id()};
    }
    template <class T, class Bk>
    static Result<T> run(Bk& b, const Item<T>& in) {
        using loranull::Covariance, loranull::Normalisation;
        const Index n = in.joined.rows();
        Result<T> r;
        for (int reference : {0, 1}) {
            const Normalisation normalisation = reference ? Normalisation::reference : Normalisation::plain;
            Covariance<Bk, T> cov(b, n, normalisation, "parity");
            for (const auto& x : in.batches) cov.add(b.upload(x));
            r.added[reference] = run_of(b, cov);
            Covariance<Bk, T> by_sample(b, n, normalisation, "parity");
            by_sample.add_samples(b.upload(in.joined), 25);
            r.by_sample[reference] = run_of(b, by_sample);
        }
        Covariance<Bk, T> a(b, n, Normalisation::plain, "a"), other(b, n, Normalisation::plain, "b");
        for (const auto& x : in.batches) a.add(b.upload(x));
        for (const auto& x : in.others) other.add(b.upload(x));
        a.merge(other);
        r.merged = run_of(b, a);
        Covariance<Bk, T> from_doubles(b, n);
        from_doubles.add(b.upload(in.doubles));
        r.from_doubles = run_of(b, from_doubles);
        return r;
    }
    template <class T, class Check>
    static void check(Check& c, const Item<T>&, const Result<T>& got, const Result<T>& expected) {
        const double tol = 4 * (185 + 2) * eps<T>();
        for (int reference : {0, 1}) {
            const Run<T>&g = got.added[reference], &e = expected.added[reference];
            c.below("matrix", c.relative(g.matrix, e.matrix), tol);
            c.below("raw sum (lower)", c.relative(c.lower(g.raw_sum_lower), c.lower(e.raw_sum_lower)), tol);
            c.that("tokens", g.tokens == e.tokens);
            c.that("samples", g.samples == e.samples);
            c.that("data_id", g.data_id == e.data_id);
            c.below("add_samples matrix", c.relative(got.by_sample[reference].matrix, expected.by_sample[reference].matrix),
                    tol);
            c.that("add_samples: 4 samples", got.by_sample[reference].samples == 4);
        }
        c.below("merged matrix", c.relative(got.merged.matrix, expected.merged.matrix), tol);
        c.that("merged tokens", got.merged.tokens == expected.merged.tokens);
        c.that("merged data_id", got.merged.data_id == "a+b");
        c.below("double activations", c.relative(got.from_doubles.matrix, expected.from_doubles.matrix), tol);
    }
};

/// Spectra with gap 1 and ||C|| ~ n: values and vectors to 10 n eps ||C||.
struct SmallestLargestEigenpairs {
    static constexpr const char* title = "smallest_eigenpairs and largest_eigenpairs match the CPU";
    template <class T>
    struct Item {
        std::string label;
        HostMatrix<T> c;
        std::vector<Index> ks;
    };
    template <class T>
    struct Result {
        std::vector<Pairs<T>> smallest, largest;  // one per k
        std::vector<T> all_values;                // linalg's symmetric_eigen
    };
    template <class T, class Bk>
    static std::vector<Item<T>> items(Bk& b) {
        std::vector<Item<T>> out;
        for (Index n : {1, 7, 33, 130})
            for (bool indefinite : {false, true}) {
                // Indefinite: values k + 0.25 - n/3, so |lambda| are distinct and the
                // |lambda| order differs from the algebraic one.
                const double shift = indefinite ? 0.25 - std::floor(double(n) / 3) : 0.0;
                out.push_back({"n " + std::to_string(n) + (indefinite ? ", indefinite" : ""),
                               symmetric_with_spectrum<T>(b, spaced_spectrum(n, shift), 110 + n),
                               {Index(1), std::min<Index>(3, n), n}});
            }
        return out;
    }
    template <class T, class Bk>
    static Result<T> run(Bk& b, const Item<T>& in) {
        const auto c = b.upload(in.c);
        Result<T> r;
        for (Index k : in.ks) {
            r.smallest.push_back(host_pairs(b, loranull::smallest_eigenpairs(b, c, k)));
            r.largest.push_back(host_pairs(b, loranull::largest_eigenpairs(b, c, k)));
        }
        r.all_values = loranull::symmetric_eigen(b, c).values;
        return r;
    }
    template <class T, class Check>
    static void check(Check& c, const Item<T>& in, const Result<T>& got, const Result<T>& expected) {
        const double n = double(in.c.rows()), tol = 10 * n * eps<T>() * n;  // ||C|| = n, gap 1
        for (std::size_t i = 0; i < in.ks.size(); ++i) {
            c.below("smallest: values", c.abs_values(got.smallest[i].values, expected.smallest[i].values), tol);
            c.below("smallest: vectors", c.columns(got.smallest[i].vectors, expected.smallest[i].vectors), tol);
            c.below("largest: values", c.abs_values(got.largest[i].values, expected.largest[i].values), tol);
            c.below("largest: vectors", c.columns(got.largest[i].vectors, expected.largest[i].vectors), tol);
        }
        c.below("symmetric_eigen values", c.abs_values(got.all_values, expected.all_values), tol);
    }
};

/// Singular values 0.9^i (relative gaps of 10%), ||A||_2 = 1: 10 (m + n) eps,
/// over the gap that separates the kept triplets for their subspaces.
struct SvdAlgorithms {
    static constexpr const char* title = "thin_svd, truncated_svd and randomized_svd (same seed) match the CPU";
    template <class T>
    struct Item {
        std::string label;
        HostMatrix<T> a;
        std::vector<double> sv;
        Index k;
    };
    template <class T>
    struct Result {
        std::vector<T> thin_values;
        SvdTriplets<T> largest, smallest, randomized;
    };
    template <class T, class Bk>
    static std::vector<Item<T>> items(Bk& b) {
        std::vector<Item<T>> out;
        struct Shape {
            Index m, n, k;
        };
        for (Shape s : {Shape{1, 1, 1}, Shape{9, 30, 3}, Shape{60, 40, 5}, Shape{130, 33, 8}}) {
            std::vector<double> sv(static_cast<std::size_t>(std::min(s.m, s.n)));
            for (std::size_t i = 0; i < sv.size(); ++i) sv[i] = std::pow(0.9, double(i));
            out.push_back({std::to_string(s.m) + " x " + std::to_string(s.n) + ", k " + std::to_string(s.k),
                           matrix_with_singular_values<T>(b, s.m, s.n, sv, 120 + s.m), sv, s.k});
        }
        return out;
    }
    template <class T, class Bk>
    static Result<T> run(Bk& b, const Item<T>& in) {
        const auto a = b.upload(in.a);
        loranull::RandomizedSvdOptions options;
        options.oversampling = 4;
        options.power_iterations = 2;
        options.seed = 5;  // the same Gaussian test matrix, drawn on the host, on both backends
        return {loranull::thin_svd(b, a).singular_values,
                host_triplets(b, loranull::truncated_svd(b, a, in.k, loranull::Triplets::largest)),
                host_triplets(b, loranull::truncated_svd(b, a, in.k, loranull::Triplets::smallest)),
                host_triplets(b, loranull::randomized_svd(b, a, in.k, options))};
    }
    template <class T, class Check>
    static void check(Check& c, const Item<T>& in, const Result<T>& got, const Result<T>& expected) {
        const Index p = static_cast<Index>(in.sv.size()), k = in.k;
        const double unit = 10 * double(in.a.rows() + in.a.cols()) * eps<T>();  // ||A||_2 = 1
        // The gap that separates the kept triplets from the others (none when k = p).
        const auto gap_after = [&](Index first, Index count) {
            double gap = 1.0;
            if (first > 0) gap = std::min(gap, in.sv[std::size_t(first - 1)] - in.sv[std::size_t(first)]);
            if (first + count < p)
                gap = std::min(gap, in.sv[std::size_t(first + count - 1)] - in.sv[std::size_t(first + count)]);
            return gap;
        };
        c.below("thin_svd values", c.abs_values(got.thin_values, expected.thin_values), unit);
        for (bool largest : {true, false}) {
            const SvdTriplets<T>&g = largest ? got.largest : got.smallest, &e = largest ? expected.largest : expected.smallest;
            const double tol = unit / gap_after(largest ? 0 : p - k, k);
            c.below(largest ? "truncated (largest): values" : "truncated (smallest): values",
                    c.abs_values(g.singular_values, e.singular_values), unit);
            c.below("truncated: U", c.projector(g.U, e.U), tol);
            c.below("truncated: V", c.projector(g.V, e.V), tol);
        }
        // Same seed: the two runs differ by rounding only, amplified by the
        // conditioning of the range finder (1 / the relative gap after k).
        const double tol = 4 * unit / gap_after(0, k);
        c.below("randomized: values", c.abs_values(got.randomized.singular_values, expected.randomized.singular_values),
                tol);
        c.below("randomized: U", c.projector(got.randomized.U, expected.randomized.U), tol);
        c.below("randomized: V", c.projector(got.randomized.V, expected.randomized.V), tol);
    }
};

/// Eigenvalues ~0.81^i (rows scaled by 0.9^i), the smallest ~1e-3 of the
/// largest at n = 33, resolved in float too; relative gaps ~20%.
struct NullSpaceCase {
    static constexpr const char* title =
        "null_space matches the CPU: basis, eigenvalues, energy, rank report, project(W)";
    template <class T>
    struct Item {
        std::string label;
        HostMatrix<T> c;             // n x n covariance (empty: use x)
        std::vector<double> spectrum;  // c's eigenvalues, ascending (the CPU's)
        HostMatrix<T> w;             // 9 x n
        HostMatrix<float> x;         // 16 x 8 activations: too few tokens, rank-deficient
        Index r;
    };
    template <class T>
    struct Result {
        HostMatrix<T> basis, projected;
        std::vector<T> eigenvalues;
        double trace = 0, energy_fraction = 0;
        bool deficient = false;
        Index zero_eigenvalues_seen = 0, structural_zeros = 0;
    };
    template <class T, class Bk>
    static std::vector<Item<T>> items(Bk& b) {
        std::vector<Item<T>> out;
        for (Index n : {7, 33}) {
            loranull::Covariance<Bk, T> cov(b, n);
            cov.add(b.upload(activations<float>(b, n, 400, 130 + n, 0.9)));
            const auto c = cov.matrix();
            std::vector<double> spectrum;
            for (T v : b.symmetric_eigen(c).values) spectrum.push_back(double(v));
            for (Index r : {Index(1), Index(4), n})
                out.push_back({"n " + std::to_string(n) + ", r " + std::to_string(r), b.download(c), spectrum,
                               gaussian<T>(9, n, 131), {}, r});
        }
        // Too few tokens: both backends flag the same rank deficiency.
        out.push_back({"16 x 8 activations, r 2", {}, {}, {}, gaussian<float>(16, 8, 140), 2});
        return out;
    }
    template <class T, class Bk, class Ns>
    static Result<T> result_of(Bk& b, const Ns& ns) {
        Result<T> r;
        r.basis = b.download(ns.basis);
        r.eigenvalues = ns.eigenvalues;
        r.trace = double(ns.trace);
        r.energy_fraction = ns.energy_fraction();
        r.deficient = ns.rank_report.deficient;
        r.zero_eigenvalues_seen = ns.rank_report.zero_eigenvalues_seen;
        r.structural_zeros = ns.rank_report.structural_zeros;
        return r;
    }
    template <class T, class Bk>
    static Result<T> run(Bk& b, const Item<T>& in) {
        if (in.x.size() > 0) {
            loranull::Covariance<Bk, T> cov(b, in.x.rows());
            cov.add(b.upload(in.x));
            return result_of<T>(b, loranull::null_space(cov, in.r));
        }
        const auto ns = loranull::null_space(b, b.upload(in.c), in.r);
        Result<T> r = result_of<T>(b, ns);
        r.projected = b.download(ns.project(b, b.upload(in.w)));
        return r;
    }
    template <class T, class Check>
    static void check(Check& c, const Item<T>& in, const Result<T>& got, const Result<T>& expected) {
        c.that("same rank deficiency", got.deficient == expected.deficient);
        if (in.x.size() > 0) {
            c.that("deficient", got.deficient);
            c.that("structural zeros", got.structural_zeros == expected.structural_zeros);
            return;
        }
        const Index n = in.c.rows(), r = in.r;
        const double norm = in.spectrum.back();  // ||C||_2
        const double unit = 10 * double(n) * eps<T>() * norm;
        c.require("basis is n x r", got.basis.rows() == n && got.basis.cols() == r);
        c.below("eigenvalues", c.abs_values(got.eigenvalues, expected.eigenvalues), unit);
        c.below("trace", std::abs(got.trace - expected.trace), unit);
        c.below("energy fraction", std::abs(got.energy_fraction - expected.energy_fraction),
                double(r) * unit / expected.trace);
        c.that("not deficient", !got.deficient);
        c.that("zero eigenvalues seen", got.zero_eigenvalues_seen == expected.zero_eigenvalues_seen);
        c.below("orthonormal", c.orthonormality(got.basis), 10 * double(n) * eps<T>());
        const double gap = r < n ? in.spectrum[std::size_t(r)] - in.spectrum[std::size_t(r - 1)] : norm;
        const double subspace_tol = unit / gap;
        c.below("subspace", c.projector(got.basis, expected.basis), subspace_tol);
        // ||W (P1 - P2)||_F <= ||W||_2 ||P1 - P2||_F, relative to ||W P||_F ~ ||W||_F sqrt(r / n).
        c.below("project(W)", c.relative(got.projected, expected.projected),
                4 * (subspace_tol + unit / norm) * std::sqrt(double(n) / double(r)));
    }
};

}  // namespace parity
