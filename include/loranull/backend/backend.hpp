#pragma once
// The backend seam: the primitive set every algorithm of linalg/, lora/ and
// llama/ is written against, stated as a C++20 concept.
//
// A backend is a small object (the CPU one is nearly empty; the CUDA one owns a
// stream, library handles and workspace) with a member template
// `Matrix<T>`: an owning, column-major rows x cols matrix of T in the backend's
// memory. Generic code receives the backend as its first argument and touches
// matrices only through these primitives plus `rows()` and `cols()`; it never
// sees Eigen or CUDA. To add a backend (ROCm, a sharded one), provide exactly
// what `Backend` below asks for and run tests/parity against the CPU.
//
// Conventions every primitive follows:
//   * shapes are checked and a mismatch throws loranull::error;
//   * outputs never alias inputs (checked where it could silently corrupt);
//   * eigenvalues and singular values come back to the host as std::vector<T>:
//     there are few of them and the algorithms sort, sum and print them.

#include <concepts>
#include <vector>

#include "loranull/core/host_matrix.hpp"
#include "loranull/core/types.hpp"

namespace loranull {

/// Eigenpairs of a symmetric matrix; vectors column j <-> values[j]. The
/// primitives return them in ascending order of the values; linalg's truncated
/// solvers document their own order.
template <class T, class Matrix>
struct SymmetricEigen {
    std::vector<T> values;  // k
    Matrix vectors;         // n x k, orthonormal columns
};

/// Thin singular value decomposition A = U diag(S) V^T with p = min(m, n)
/// (or fewer, when truncated).
template <class T, class Matrix>
struct ThinSvd {
    Matrix U;                       // m x p, orthonormal columns
    std::vector<T> singular_values; // p, descending, >= 0
    Matrix V;                       // n x p, orthonormal columns
};

/// The matrix type of backend Bk for scalar T.
template <class Bk, class T>
using matrix_t = typename Bk::template Matrix<T>;

/// The primitives, for one scalar type T.
template <class Bk, class T>
concept BackendFor = Real<T> && requires(Bk& b, matrix_t<Bk, T>& out, const matrix_t<Bk, T>& a,
                                         const HostMatrix<T>& host, T alpha, Index i,
                                         const std::vector<T>& diag, Op op) {
    // --- storage -------------------------------------------------------------
    // rows x cols of zeros.
    { b.template zeros<T>(i, i) } -> std::same_as<matrix_t<Bk, T>>;
    // Matrices name their scalar type as Eigen does.
    requires std::same_as<typename matrix_t<Bk, T>::Scalar, T>;
    { a.rows() } -> std::convertible_to<Index>;
    { a.cols() } -> std::convertible_to<Index>;
    // Host <-> backend copies (the only way data crosses the seam).
    { b.upload(host) } -> std::same_as<matrix_t<Bk, T>>;
    { b.download(a) } -> std::same_as<HostMatrix<T>>;
    // A copy of the block of `rows` x `cols` starting at (row0, col0).
    { b.block(a, i, i, i, i) } -> std::same_as<matrix_t<Bk, T>>;
    // The columns of A listed in `which`, in that order (a gather).
    { b.select_columns(a, std::vector<Index>{}) } -> std::same_as<matrix_t<Bk, T>>;
    // Copies A into out at (row0, col0): the inverse of block (A must fit).
    b.set_block(out, i, i, a);
    // A^T, freshly allocated.
    { b.transpose(a) } -> std::same_as<matrix_t<Bk, T>>;

    // --- products ------------------------------------------------------------
    // out = alpha * op(A) * op(B) + beta * out; out is presized, and with
    // beta == 0 its old contents are ignored (NaN included).
    b.gemm(op, op, alpha, a, a, alpha, out);
    // Symmetric rank-k update of the lower triangle: out_lower += alpha * X X^T
    // (X is n x k, out n x n). The strictly upper triangle is not touched. This
    // is the covariance kernel: half the flops of a general product.
    b.syrk_lower(alpha, a, out);
    // Copies the lower triangle onto the upper one: out = tril(out) + tril(out, -1)^T.
    b.symmetrize_lower(out);

    // --- decompositions (inputs are not modified) ----------------------------
    // All eigenpairs of symmetric A (its lower triangle is read): LAPACK ?syevd.
    { b.symmetric_eigen(a) } -> std::same_as<SymmetricEigen<T, matrix_t<Bk, T>>>;
    // Eigenpairs first .. first + count - 1 in ascending order of the values
    // (0-based): LAPACK ?syevr with RANGE = 'I', cuSOLVER syevdx.
    { b.symmetric_eigen_range(a, i, i) } -> std::same_as<SymmetricEigen<T, matrix_t<Bk, T>>>;
    // Thin SVD (p = min(m, n)): LAPACK ?gesdd, cuSOLVER gesvd(j).
    { b.thin_svd(a) } -> std::same_as<ThinSvd<T, matrix_t<Bk, T>>>;
    // The m x min(m, n) factor Q of a thin QR decomposition A = Q R.
    { b.thin_q(a) } -> std::same_as<matrix_t<Bk, T>>;

    // --- elementwise and reductions ------------------------------------------
    b.scale(alpha, out);              // out *= alpha
    b.axpy(alpha, a, out);            // out += alpha * A
    b.scale_columns(out, diag);       // out(:, j) *= diag[j]
    b.scale_rows(out, diag);          // out(i, :) *= diag[i]
    b.add_to_diagonal(out, alpha);    // out(i, i) += alpha
    { b.trace(a) } -> std::same_as<T>;
    { b.max_coeff(a) } -> std::same_as<T>;       // signed maximum entry
    { b.frobenius_norm(a) } -> std::same_as<T>;
    { b.sum_of_squares(a) } -> std::same_as<double>;  // sum_ij A_ij^2, accumulated in double
    { b.dot(a, a) } -> std::same_as<T>;           // sum_ij A_ij C_ij (Frobenius inner product)
    { b.all_finite(a) } -> std::same_as<bool>;   // no NaN, no Inf
};

/// A backend: every primitive in float and double, plus the two mixed-precision
/// ones that calibration needs (float activations into a double accumulator).
template <class Bk>
concept Backend = BackendFor<Bk, float> && BackendFor<Bk, double> &&
                  requires(Bk& b, const matrix_t<Bk, float>& x, matrix_t<Bk, double>& c) {
                      b.syrk_lower(1.0, x, c);
                      b.add_lower(x, c);  // c_lower += x_lower, converted (x square)
                      { b.template convert<double>(x) } -> std::same_as<matrix_t<Bk, double>>;
                  };

// --- small helpers that read better than the primitives in generic code ------

/// rows x cols zeros of T on backend b.
template <Real T, class Bk>
matrix_t<Bk, T> zeros(Bk& b, Index rows, Index cols) {
    return b.template zeros<T>(rows, cols);
}

/// op(A) * op(C), freshly allocated.
template <class Bk, class M>
M product(Bk& b, const M& a, const M& c, Op op_a = Op::none, Op op_c = Op::none) {
    using T = typename M::Scalar;
    const Index rows = op_a == Op::none ? a.rows() : a.cols();
    const Index cols = op_c == Op::none ? c.cols() : c.rows();
    // beta = 0 ignores the output's old contents: a backend that can skip
    // zeroing it (a pass over memory the product writes anyway) does.
    M out;
    if constexpr (requires { b.template uninitialized<T>(rows, cols); })
        out = b.template uninitialized<T>(rows, cols);
    else
        out = zeros<T>(b, rows, cols);
    b.gemm(op_a, op_c, T(1), a, c, T(0), out);
    return out;
}

/// Columns first .. first + count - 1 of A, copied.
template <class Bk, class M>
M columns(Bk& b, const M& a, Index first, Index count) {
    return b.block(a, 0, first, a.rows(), count);
}

}  // namespace loranull
