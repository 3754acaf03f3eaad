#pragma once
// Plain references for the CPU backend's fast kernels, llm.c style: the test
// oracle for the LAPACK/BLAS paths, and the fallback when the library is built
// without LAPACKE (LORANULL_CPU_NO_LAPACK). Eigen's own solvers only: slower
// (SelfAdjointEigenSolver is 5-9x slower than ?syevd at n = 4096) but
// dependency-free and independently written, which is what an oracle needs.

#include <Eigen/Dense>

#include "loranull/backend/backend.hpp"

namespace loranull::cpu_reference {

template <class T>
using EigenMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;

/// All eigenpairs of symmetric A (lower triangle read), ascending.
template <Real T>
SymmetricEigen<T, EigenMatrix<T>> symmetric_eigen(const EigenMatrix<T>& a) {
    SymmetricEigen<T, EigenMatrix<T>> out;
    if (a.rows() == 0) return out;
    Eigen::SelfAdjointEigenSolver<EigenMatrix<T>> solver(a, Eigen::ComputeEigenvectors);
    require(solver.info() == Eigen::Success, "cpu_reference::symmetric_eigen", "did not converge");
    out.values.assign(solver.eigenvalues().data(), solver.eigenvalues().data() + a.rows());
    out.vectors = solver.eigenvectors();
    return out;
}

/// Thin SVD, singular values descending.
template <Real T>
ThinSvd<T, EigenMatrix<T>> thin_svd(const EigenMatrix<T>& a) {
    ThinSvd<T, EigenMatrix<T>> out;
    const Index p = std::min(a.rows(), a.cols());
    if (p == 0) {
        out.U = EigenMatrix<T>::Zero(a.rows(), 0);
        out.V = EigenMatrix<T>::Zero(a.cols(), 0);
        return out;
    }
    Eigen::BDCSVD<EigenMatrix<T>> svd(a, Eigen::ComputeThinU | Eigen::ComputeThinV);
    out.U = svd.matrixU();
    out.V = svd.matrixV();
    out.singular_values.assign(svd.singularValues().data(), svd.singularValues().data() + p);
    return out;
}

/// Thin Q of A = Q R (Householder).
template <Real T>
EigenMatrix<T> thin_q(const EigenMatrix<T>& a) {
    const Index k = std::min(a.rows(), a.cols());
    Eigen::HouseholderQR<EigenMatrix<T>> qr(a);
    return qr.householderQ() * EigenMatrix<T>::Identity(a.rows(), k);
}

/// out_lower += alpha X X^T through Eigen's symmetric rank update.
template <Real T>
void syrk_lower(T alpha, const EigenMatrix<T>& x, EigenMatrix<T>& out) {
    out.template selfadjointView<Eigen::Lower>().rankUpdate(x, alpha);
}

/// out = alpha op(A) op(B) + beta out by three nested loops, in double: the
/// oracle for gemm (llm.c's matmul_forward_naive).
template <Real T>
void gemm_naive(Op op_a, Op op_b, T alpha, const EigenMatrix<T>& a, const EigenMatrix<T>& b, T beta,
                EigenMatrix<T>& out) {
    auto at = [&](Index i, Index k) { return op_a == Op::none ? a(i, k) : a(k, i); };
    auto bt = [&](Index k, Index j) { return op_b == Op::none ? b(k, j) : b(j, k); };
    const Index inner = op_a == Op::none ? a.cols() : a.rows();
    for (Index j = 0; j < out.cols(); ++j)
        for (Index i = 0; i < out.rows(); ++i) {
            double sum = 0;
            for (Index k = 0; k < inner; ++k) sum += double(at(i, k)) * double(bt(k, j));
            out(i, j) = static_cast<T>(alpha * sum + (beta == T(0) ? 0.0 : double(beta) * out(i, j)));
        }
}

}  // namespace loranull::cpu_reference
