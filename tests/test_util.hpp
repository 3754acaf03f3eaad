#pragma once
// Shared helpers for the CPU test suites: random matrices with a chosen
// spectrum, and the comparisons the tests use (subspaces by their projectors,
// never by raw vectors, since signs and bases of repeated eigenvalues are
// arbitrary).

#include <cmath>
#include <limits>
#include <vector>

#include <Eigen/Dense>

#include <loranull/loranull.hpp>

#include "error_message.hpp"

namespace test {

using loranull::Index;
template <class T>
using Mat = loranull::CpuBackend::Matrix<T>;

/// Tolerance unit per precision: eps(T) times a size factor.
template <class T>
double eps() { return std::numeric_limits<T>::epsilon(); }

template <class T>
Mat<T> gaussian(Index rows, Index cols, std::uint64_t seed) {
    loranull::Rng rng(seed);
    loranull::CpuBackend cpu;
    return cpu.upload(loranull::random_normal<T>(rows, cols, rng));
}

/// Random orthonormal n x k (Q of a Gaussian).
template <class T>
Mat<T> orthonormal(Index n, Index k, std::uint64_t seed) {
    Mat<double> g = gaussian<double>(n, k, seed);
    Eigen::HouseholderQR<Mat<double>> qr(g);
    return (qr.householderQ() * Mat<double>::Identity(n, k)).template cast<T>();
}

/// Symmetric matrix Q diag(values) Q^T with a random orthogonal Q.
template <class T>
Mat<T> symmetric_with_spectrum(const std::vector<double>& values, std::uint64_t seed) {
    const Index n = static_cast<Index>(values.size());
    Mat<double> q = orthonormal<double>(n, n, seed);
    Mat<double> d = Eigen::Map<const Eigen::VectorXd>(values.data(), n).asDiagonal();
    Mat<double> c = q * d * q.transpose();
    c = (0.5 * (c + c.transpose())).eval();
    return c.template cast<T>();
}

/// m x n matrix U diag(s) V^T with random orthonormal U, V.
template <class T>
Mat<T> matrix_with_singular_values(Index m, Index n, const std::vector<double>& s, std::uint64_t seed) {
    const Index p = static_cast<Index>(s.size());
    Mat<double> u = orthonormal<double>(m, p, seed);
    Mat<double> v = orthonormal<double>(n, p, seed + 1000);
    Mat<double> a = u * Eigen::Map<const Eigen::VectorXd>(s.data(), p).asDiagonal() * v.transpose();
    return a.template cast<T>();
}

/// A std::vector as an Eigen column vector.
template <class T>
Eigen::Matrix<T, Eigen::Dynamic, 1> vec(const std::vector<T>& v) {
    return Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>(v.data(), static_cast<Index>(v.size()));
}

/// n x tokens activations Q D G with a decaying spectrum: G Gaussian, D =
/// diag(decay^i), Q a random rotation, so that the covariance's small
/// eigenvalues are well separated (and not axis-aligned).
template <class T>
Mat<T> anisotropic_activations(Index n, Index tokens, std::uint64_t seed, double decay = 0.8) {
    Mat<double> x = gaussian<double>(n, tokens, seed);
    Mat<double> q = orthonormal<double>(n, n, seed + 1);
    for (Index i = 0; i < n; ++i) x.row(i) *= std::pow(decay, double(i));
    return (q * x).template cast<T>();
}

/// ||U^T U - I||_F in double.
template <class T>
double orthonormality_error(const Mat<T>& u) {
    Mat<double> ud = u.template cast<double>();
    return (ud.transpose() * ud - Mat<double>::Identity(u.cols(), u.cols())).norm();
}

/// ||U1 U1^T - U2 U2^T||_F: distance between the subspaces spanned by the columns.
template <class T1, class T2>
double projector_distance(const Mat<T1>& u1, const Mat<T2>& u2) {
    Mat<double> a = u1.template cast<double>(), b = u2.template cast<double>();
    return (a * a.transpose() - b * b.transpose()).norm();
}

/// Relative Frobenius distance ||A - B|| / max(||B||, tiny).
template <class T1, class T2>
double relative_error(const Mat<T1>& a, const Mat<T2>& b) {
    Mat<double> ad = a.template cast<double>(), bd = b.template cast<double>();
    return (ad - bd).norm() / std::max(bd.norm(), 1e-300);
}

}  // namespace test
