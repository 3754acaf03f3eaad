#pragma once
// The CPU backend: Eigen matrices and elementwise work, OpenBLAS ?gemm for
// every product and ?syrk for the covariance kernel, LAPACKE for the
// decompositions (?syevd, ?syevr, ?gesdd, ?geqrf/?orgqr). One thread pool
// (OpenBLAS's) runs all the heavy work: Eigen's OpenMP products, mixed with
// BLAS calls, spin against them (docs/benchmarks.md, "one trap").
//
// Define LORANULL_CPU_NO_LAPACK to build without OpenBLAS/LAPACKE: products
// then run in Eigen and the decompositions fall back to Eigen's own solvers
// (cpu/reference.hpp), correct but several times slower.

#include <algorithm>
#include <cmath>
#include <vector>

#include <Eigen/Dense>

#include "loranull/backend/backend.hpp"
#include "loranull/backend/cpu/gemm.hpp"
#include "loranull/backend/cpu/nn_kernels.hpp"
#include "loranull/backend/cpu/reference.hpp"
#include "loranull/core/error.hpp"
#ifndef LORANULL_CPU_NO_LAPACK
#include "loranull/backend/cpu/lapack.hpp"
#endif

namespace loranull {

class CpuBackend : public CpuNnKernels {
public:
    /// Column-major, owning; Eigen's MatrixX<T>.
    template <class T>
    using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;

    /// "cpu", for messages, files and benchmark labels.
    static constexpr const char* name() { return "cpu"; }
    /// Whether matrices live in host memory: data() is a host pointer (parallel/: what may go to MPI as is).
    static constexpr bool host_memory = true;

    // --- storage -------------------------------------------------------------

    template <Real T>
    Matrix<T> zeros(Index rows, Index cols) const {
        require(rows >= 0 && cols >= 0, "CpuBackend::zeros", "negative shape ", shape_string(rows, cols));
        return Matrix<T>::Zero(rows, cols);
    }

    /// rows x cols of unspecified contents, for a product to overwrite
    /// (product() with beta = 0).
    template <Real T>
    Matrix<T> uninitialized(Index rows, Index cols) const {
        require(rows >= 0 && cols >= 0, "CpuBackend::uninitialized", "negative shape ", shape_string(rows, cols));
        return Matrix<T>(rows, cols);
    }

    template <Real T>
    Matrix<T> upload(const HostMatrix<T>& host) const {
        return Eigen::Map<const Matrix<T>>(host.data(), host.rows(), host.cols());
    }

    template <Real T>
    HostMatrix<T> download(const Matrix<T>& a) const {
        HostMatrix<T> host(a.rows(), a.cols());
        Eigen::Map<Matrix<T>>(host.data(), a.rows(), a.cols()) = a;
        return host;
    }

    template <Real T>
    Matrix<T> block(const Matrix<T>& a, Index row0, Index col0, Index rows, Index cols) const {
        require(row0 >= 0 && col0 >= 0 && rows >= 0 && cols >= 0 && row0 + rows <= a.rows() &&
                    col0 + cols <= a.cols(),
                "CpuBackend::block", "block of ", shape_string(rows, cols), " at (", row0, ", ", col0,
                ") does not fit a ", shape_string(a.rows(), a.cols()), " matrix");
        return a.block(row0, col0, rows, cols);
    }

    template <Real T>
    Matrix<T> select_columns(const Matrix<T>& a, const std::vector<Index>& which) const {
        Matrix<T> out(a.rows(), static_cast<Index>(which.size()));
        for (std::size_t j = 0; j < which.size(); ++j) {
            require(which[j] >= 0 && which[j] < a.cols(), "CpuBackend::select_columns", "column ", which[j],
                    " of a ", shape_string(a.rows(), a.cols()), " matrix");
            out.col(static_cast<Index>(j)) = a.col(which[j]);
        }
        return out;
    }

    template <Real T>
    void set_block(Matrix<T>& out, Index row0, Index col0, const Matrix<T>& a) const {
        require(row0 >= 0 && col0 >= 0 && row0 + a.rows() <= out.rows() && col0 + a.cols() <= out.cols(),
                "CpuBackend::set_block", "a ", shape_string(a.rows(), a.cols()), " block at (", row0, ", ", col0,
                ") does not fit a ", shape_string(out.rows(), out.cols()), " matrix");
        out.block(row0, col0, a.rows(), a.cols()) = a;
    }

    template <Real T>
    Matrix<T> transpose(const Matrix<T>& a) const { return a.transpose(); }

    template <Real To, Real From>
    Matrix<To> convert(const Matrix<From>& a) const {
        return a.template cast<To>();
    }

    // --- products ------------------------------------------------------------

    template <Real T>
    void gemm(Op op_a, Op op_b, T alpha, const Matrix<T>& a, const Matrix<T>& b, T beta, Matrix<T>& out) const {
        const Index m = op_a == Op::none ? a.rows() : a.cols();
        const Index k = op_a == Op::none ? a.cols() : a.rows();
        const Index k2 = op_b == Op::none ? b.rows() : b.cols();
        const Index n = op_b == Op::none ? b.cols() : b.rows();
        require(k == k2 && out.rows() == m && out.cols() == n, "CpuBackend::gemm",
                "op(A) is ", shape_string(m, k), ", op(B) is ", shape_string(k2, n), ", out is ",
                shape_string(out.rows(), out.cols()));
        require(out.size() == 0 || (out.data() != a.data() && out.data() != b.data()), "CpuBackend::gemm",
                "out must not alias A or B");
        cpu_detail::gemm(op_a == Op::transpose, op_b == Op::transpose, alpha, a, b, beta, out);
    }

    /// out_lower += alpha X X^T; X may be float while out is double (the
    /// activations are converted once, then ?syrk runs in the accumulator's type).
    template <Real Tx, Real T>
    void syrk_lower(T alpha, const Matrix<Tx>& x, Matrix<T>& out) const {
        require(out.rows() == x.rows() && out.cols() == x.rows(), "CpuBackend::syrk_lower", "X is ",
                shape_string(x.rows(), x.cols()), ", out is ", shape_string(out.rows(), out.cols()),
                ", expected out ", shape_string(x.rows(), x.rows()));
        if (x.rows() == 0 || x.cols() == 0) return;
        if constexpr (!std::is_same_v<Tx, T>) {
            // Convert a panel of tokens at a time: bounded extra memory (n x 512
            // of T), and a rank-512 update keeps ?syrk at full speed.
            constexpr Index panel = 512;
            Matrix<T> converted;
            for (Index start = 0; start < x.cols(); start += panel) {
                const Index width = std::min(panel, x.cols() - start);
                converted = x.middleCols(start, width).template cast<T>();
                syrk_lower(alpha, converted, out);
            }
        } else {
#ifdef LORANULL_CPU_NO_LAPACK
            cpu_reference::syrk_lower(alpha, x, out);
#else
            const char* where = "CpuBackend::syrk_lower";
            lapack::syrk_lower(lapack::to_int(x.rows(), where), lapack::to_int(x.cols(), where),
                                    alpha, x.data(), static_cast<lapack_int>(x.rows()), out.data(),
                                    static_cast<lapack_int>(out.rows()));
#endif
        }
    }

    /// out_lower += a_lower, a converted to out's type (a float panel of
    /// products into a double sum: Covariance's fp32_panels).
    template <Real Ta, Real T>
    void add_lower(const Matrix<Ta>& a, Matrix<T>& out) const {
        require(a.rows() == a.cols() && out.rows() == a.rows() && out.cols() == a.cols(), "CpuBackend::add_lower",
                "A is ", shape_string(a.rows(), a.cols()), ", out is ", shape_string(out.rows(), out.cols()),
                " (need equal square shapes)");
        const Index n = a.rows();
        for (Index j = 0; j < n; ++j) out.col(j).tail(n - j) += a.col(j).tail(n - j).template cast<T>();
    }

    template <Real T>
    void symmetrize_lower(Matrix<T>& out) const {
        require(out.rows() == out.cols(), "CpuBackend::symmetrize_lower", "matrix is ",
                shape_string(out.rows(), out.cols()), ", expected square");
        out.template triangularView<Eigen::StrictlyUpper>() = out.transpose();
    }

    // --- decompositions ------------------------------------------------------

    template <Real T>
    SymmetricEigen<T, Matrix<T>> symmetric_eigen(const Matrix<T>& a) const {
        require_square(a, "CpuBackend::symmetric_eigen");
#ifdef LORANULL_CPU_NO_LAPACK
        return cpu_reference::symmetric_eigen<T>(a);
#else
        SymmetricEigen<T, Matrix<T>> out;
        out.vectors = a;  // ?syevd overwrites its input with the eigenvectors
        out.values.resize(static_cast<std::size_t>(a.rows()));
        const lapack_int n = lapack::to_int(a.rows(), "CpuBackend::symmetric_eigen");
        lapack::syevd<T>(n, out.vectors.data(), std::max<lapack_int>(n, 1), out.values.data());
        return out;
#endif
    }

    template <Real T>
    SymmetricEigen<T, Matrix<T>> symmetric_eigen_range(const Matrix<T>& a, Index first, Index count) const {
        const char* where = "CpuBackend::symmetric_eigen_range";
        require_square(a, where);
        require(first >= 0 && count >= 0 && first + count <= a.rows(), where, "pairs ", first, " .. ",
                first + count - 1, " requested of a ", shape_string(a.rows(), a.cols()), " matrix");
        SymmetricEigen<T, Matrix<T>> out;
        if (count == 0) {
            out.vectors = Matrix<T>::Zero(a.rows(), 0);
            return out;
        }
#ifdef LORANULL_CPU_NO_LAPACK
        auto all = cpu_reference::symmetric_eigen<T>(a);
        out.values.assign(all.values.begin() + first, all.values.begin() + first + count);
        out.vectors = all.vectors.middleCols(first, count);
#else
        const lapack_int n = lapack::to_int(a.rows(), where);
        Matrix<T> work = a;  // destroyed by ?syevr
        std::vector<T> values(static_cast<std::size_t>(n));
        out.vectors.resize(a.rows(), count);
        const lapack_int found = lapack::syevr<T>(
            n, work.data(), n, static_cast<lapack_int>(first + 1), static_cast<lapack_int>(first + count),
            values.data(), out.vectors.data(), n);
        require(found == count, where, "LAPACK returned ", found, " pairs, expected ", count);
        out.values.assign(values.begin(), values.begin() + count);
#endif
        return out;
    }

    template <Real T>
    ThinSvd<T, Matrix<T>> thin_svd(const Matrix<T>& a) const {
#ifdef LORANULL_CPU_NO_LAPACK
        return cpu_reference::thin_svd<T>(a);
#else
        const char* where = "CpuBackend::thin_svd";
        const Index p = std::min(a.rows(), a.cols());
        ThinSvd<T, Matrix<T>> out;
        out.U.resize(a.rows(), p);
        out.V.resize(a.cols(), p);
        out.singular_values.resize(static_cast<std::size_t>(p));
        if (p == 0) return out;
        Matrix<T> work = a;  // destroyed by ?gesdd
        Matrix<T> vt(p, a.cols());
        const lapack_int m = lapack::to_int(a.rows(), where), n = lapack::to_int(a.cols(), where);
        lapack::gesdd<T>(m, n, work.data(), m, out.singular_values.data(), out.U.data(), m, vt.data(),
                              static_cast<lapack_int>(p));
        out.V = vt.transpose();
        return out;
#endif
    }

    template <Real T>
    Matrix<T> thin_q(const Matrix<T>& a) const {
#ifdef LORANULL_CPU_NO_LAPACK
        return cpu_reference::thin_q<T>(a);
#else
        const char* where = "CpuBackend::thin_q";
        const Index k = std::min(a.rows(), a.cols());
        Matrix<T> q = a;
        if (k == 0) return Matrix<T>::Zero(a.rows(), 0);
        lapack::thin_q<T>(lapack::to_int(a.rows(), where), lapack::to_int(a.cols(), where),
                               q.data(), static_cast<lapack_int>(a.rows()));
        q.conservativeResize(a.rows(), k);
        return q;
#endif
    }

    // --- elementwise and reductions ------------------------------------------

    template <Real T>
    void scale(T alpha, Matrix<T>& out) const { out *= alpha; }

    template <Real T>
    void axpy(T alpha, const Matrix<T>& a, Matrix<T>& out) const {
        require(a.rows() == out.rows() && a.cols() == out.cols(), "CpuBackend::axpy", "A is ",
                shape_string(a.rows(), a.cols()), ", out is ", shape_string(out.rows(), out.cols()));
        out += alpha * a;
    }

    template <Real T>
    void scale_columns(Matrix<T>& out, const std::vector<T>& factors) const {
        require(static_cast<Index>(factors.size()) == out.cols(), "CpuBackend::scale_columns", factors.size(),
                " factors for a ", shape_string(out.rows(), out.cols()), " matrix");
        out = out * Eigen::Map<const Eigen::Vector<T, Eigen::Dynamic>>(factors.data(), out.cols()).asDiagonal();
    }

    template <Real T>
    void scale_rows(Matrix<T>& out, const std::vector<T>& factors) const {
        require(static_cast<Index>(factors.size()) == out.rows(), "CpuBackend::scale_rows", factors.size(),
                " factors for a ", shape_string(out.rows(), out.cols()), " matrix");
        out = Eigen::Map<const Eigen::Vector<T, Eigen::Dynamic>>(factors.data(), out.rows()).asDiagonal() * out;
    }

    template <Real T>
    void add_to_diagonal(Matrix<T>& out, T alpha) const { out.diagonal().array() += alpha; }

    template <Real T>
    T trace(const Matrix<T>& a) const {
        require_square(a, "CpuBackend::trace");
        return a.trace();
    }

    template <Real T>
    T max_coeff(const Matrix<T>& a) const {
        require(a.size() > 0, "CpuBackend::max_coeff", "empty matrix (", shape_string(a.rows(), a.cols()), ")");
        return a.maxCoeff();
    }

    template <Real T>
    T frobenius_norm(const Matrix<T>& a) const { return a.norm(); }

    /// sum_ij A_ij^2 accumulated in double: each column's sum in T (vectorised,
    /// rounding relative ~sqrt(rows) eps), the columns' sums in double.
    template <Real T>
    double sum_of_squares(const Matrix<T>& a) const {
        if (a.size() == 0) return 0.0;
        return a.colwise().squaredNorm().template cast<double>().sum();
    }

    template <Real T>
    T dot(const Matrix<T>& a, const Matrix<T>& c) const {
        require(a.rows() == c.rows() && a.cols() == c.cols(), "CpuBackend::dot", "A is ",
                shape_string(a.rows(), a.cols()), ", C is ", shape_string(c.rows(), c.cols()), " (need equal shapes)");
        return a.cwiseProduct(c).sum();
    }

    /// One vectorised pass: 0 * x is 0 for finite x and NaN for NaN or Inf,
    /// and a NaN anywhere makes the sum NaN. (Eigen's allFinite() is a scalar
    /// loop: 9% of a whole covariance update at n = 1024.)
    template <Real T>
    bool all_finite(const Matrix<T>& a) const { return (a.array() * T(0)).sum() == T(0); }

private:
    template <class M>
    static void require_square(const M& a, const char* where) {
        require(a.rows() == a.cols(), where, "matrix is ", shape_string(a.rows(), a.cols()), ", expected square");
    }
};

static_assert(Backend<CpuBackend>, "CpuBackend must provide the whole primitive set");
static_assert(NnBackend<CpuBackend>, "CpuBackend must provide every neural-network kernel");

}  // namespace loranull
