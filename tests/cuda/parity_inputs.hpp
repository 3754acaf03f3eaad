#pragma once
// How the parity cases (parity_table.hpp) make their inputs: seeded, on the
// host, through the reference backend. Generic (no Eigen, no CUDA): the cases'
// items(b) run these with b = CpuBackend, and the very same host matrices then
// go to both halves, so the two backends always see bit-identical inputs.

#include <cmath>
#include <cstdint>
#include <vector>

#include <loranull/backend/backend.hpp>
#include <loranull/core/host_matrix.hpp>
#include <loranull/core/random.hpp>
#include <loranull/core/types.hpp>

namespace parity {

using loranull::HostMatrix;
using loranull::Index;
using loranull::Op;
using Tokens = std::vector<std::int32_t>;

template <class T>
HostMatrix<T> gaussian(Index rows, Index cols, std::uint64_t seed, double stddev = 1.0) {
    loranull::Rng rng(seed);
    return loranull::random_normal<T>(rows, cols, rng, stddev);
}

/// `count` ids uniform in [0, vocab).
inline Tokens random_tokens(Index count, Index vocab, std::uint64_t seed) {
    loranull::Rng rng(seed);
    Tokens t(static_cast<std::size_t>(count));
    for (auto& x : t) x = static_cast<std::int32_t>(rng.next_u64() % static_cast<std::uint64_t>(vocab));
    return t;
}

/// n distinct eigenvalues 1, 2, ..., n shifted by `shift` (gap 1).
inline std::vector<double> spaced_spectrum(Index n, double shift = 0) {
    std::vector<double> values(static_cast<std::size_t>(n));
    for (Index i = 0; i < n; ++i) values[static_cast<std::size_t>(i)] = double(i + 1) + shift;
    return values;
}

/// A random orthonormal n x k (the Q of a Gaussian), in double.
template <class Bk>
auto orthonormal(Bk& b, Index n, Index k, std::uint64_t seed) {
    return b.thin_q(b.upload(gaussian<double>(n, k, seed)));
}

/// U diag(s) V^T (m x n) with random orthonormal U (m x p), V (n x p), built
/// in double and rounded to T once.
template <class T, class Bk>
HostMatrix<T> matrix_with_singular_values(Bk& b, Index m, Index n, const std::vector<double>& s, std::uint64_t seed) {
    const Index p = static_cast<Index>(s.size());
    auto us = orthonormal(b, m, p, seed);
    const auto v = orthonormal(b, n, p, seed + 1000);
    b.scale_columns(us, s);
    auto a = b.template zeros<double>(m, n);
    b.gemm(Op::none, Op::transpose, 1.0, us, v, 0.0, a);
    return b.download(b.template convert<T>(a));
}

/// Q diag(values) Q^T, symmetrised exactly ((C + C^T) / 2), rounded to T once.
template <class T, class Bk>
HostMatrix<T> symmetric_with_spectrum(Bk& b, const std::vector<double>& values, std::uint64_t seed) {
    const Index n = static_cast<Index>(values.size());
    const auto q = orthonormal(b, n, n, seed);
    auto qd = q;
    b.scale_columns(qd, values);
    auto c = b.template zeros<double>(n, n);
    b.gemm(Op::none, Op::transpose, 1.0, qd, q, 0.0, c);
    b.axpy(1.0, b.transpose(c), c);
    b.scale(0.5, c);
    return b.download(b.template convert<T>(c));
}

/// n x tokens activations Q D G with a decaying spectrum (G Gaussian, D =
/// diag(decay^i), Q a random rotation): a covariance whose small eigenvalues
/// are well separated and not axis-aligned.
template <class T, class Bk>
HostMatrix<T> activations(Bk& b, Index n, Index tokens, std::uint64_t seed, double decay = 0.8) {
    auto x = b.upload(gaussian<double>(n, tokens, seed));
    std::vector<double> rows(static_cast<std::size_t>(n));
    for (Index i = 0; i < n; ++i) rows[static_cast<std::size_t>(i)] = std::pow(decay, double(i));
    b.scale_rows(x, rows);
    const auto q = orthonormal(b, n, n, seed + 1);
    auto out = b.template zeros<double>(n, tokens);
    b.gemm(Op::none, Op::none, 1.0, q, x, 0.0, out);
    return b.download(b.template convert<T>(out));
}

}  // namespace parity
