#pragma once
// The metrics and assertions the parity cases' check() rules use
// (parity_table.hpp), on host matrices: the CPU half's side only (Eigen and
// doctest), so that the table itself stays free of both.
//
//   matrices       ||G - C||_F / max(||C||_F, tiny)               relative
//                  ||G - C||_F / scale, scale the norm of the terms  scaled
//   values         max_i |g_i - c_i| (/ max_i |c_i|)              abs_values, rel_values
//   subspaces      ||U_g U_g^T - U_c U_c^T||_F, never raw vectors  projector
//   single vectors the projector distance of each column          columns
//   invariants     ||U^T U - I||_F, ||C V - V D||_F / ||C||_F, ||U S V^T - A|| / ||A||
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../test_util.hpp"
#include "parity_inputs.hpp"

namespace parity {

class Check {
public:
    template <class T>
    using Mat = test::Mat<T>;

    // --- assertions (what names the quantity in the failure message) ---------

    void below(const char* what, double value, double bound) {
        CHECK_MESSAGE(value < bound, what, ": ", value, " is not below ", bound);
    }
    void at_most(const char* what, double value, double bound) {
        CHECK_MESSAGE(value <= bound, what, ": ", value, " exceeds ", bound);
    }
    void that(const char* what, bool holds) { CHECK_MESSAGE(holds, what); }
    void require(const char* what, bool holds) { REQUIRE_MESSAGE(holds, what); }

    // --- metrics ---------------------------------------------------------------

    template <class T>
    double norm(const HostMatrix<T>& a) const {
        return mat(a).template cast<double>().norm();
    }

    template <class T1, class T2>
    double relative(const HostMatrix<T1>& got, const HostMatrix<T2>& expected) {
        same_shape(got, expected);
        return test::relative_error(mat(got), mat(expected));
    }

    /// ||G - C||_F / scale, for results whose own norm can be small by
    /// cancellation: scale is the norm of the terms (as in BLAS error bounds).
    template <class T>
    double scaled(const HostMatrix<T>& got, const HostMatrix<T>& expected, double scale) {
        same_shape(got, expected);
        return (mat(got).template cast<double>() - mat(expected).template cast<double>()).norm() /
               std::max(scale, 1e-300);
    }

    template <class T>
    double projector(const HostMatrix<T>& got, const HostMatrix<T>& expected) {
        same_shape(got, expected);
        return test::projector_distance(mat(got), mat(expected));
    }

    /// max over columns j of ||u1 u1^T - u2 u2^T||_F = sqrt(2) sin(theta),
    /// computed stably from w = ||u1 - s u2|| = 2 sin(theta / 2) (s the sign of
    /// u1 . u2, both normalised in double): sqrt(2 (1 - (u1 . u2)^2)) would
    /// cancel to sqrt(eps) and hide everything below it.
    template <class T>
    double columns(const HostMatrix<T>& got, const HostMatrix<T>& expected) {
        same_shape(got, expected);
        const Mat<double> u1 = mat(got).template cast<double>(), u2 = mat(expected).template cast<double>();
        double worst = 0;
        for (Index j = 0; j < u1.cols(); ++j) {
            const Eigen::VectorXd a = u1.col(j).normalized(), b = u2.col(j).normalized();
            const double w = a.dot(b) >= 0 ? (a - b).norm() : (a + b).norm();
            worst = std::max(worst, std::sqrt(2.0) * w * std::sqrt(std::max(0.0, 1.0 - w * w / 4)));
        }
        return worst;
    }

    template <class T>
    double orthonormality(const HostMatrix<T>& u) const {
        return test::orthonormality_error(mat(u));
    }

    /// ||C V - V diag(values)||_F / ||C||_F in double.
    template <class T>
    double eigen_residual(const HostMatrix<T>& c, const HostMatrix<T>& v, const std::vector<T>& values) const {
        const Mat<double> cd = mat(c).template cast<double>(), vd = mat(v).template cast<double>();
        Mat<double> vdl = vd;
        for (Index j = 0; j < vd.cols(); ++j) vdl.col(j) *= double(values[static_cast<std::size_t>(j)]);
        return (cd * vd - vdl).norm() / std::max(cd.norm(), 1e-300);
    }

    /// ||U diag(s) V^T - A||_F / ||A||_F in double.
    template <class T>
    double reconstruction(const HostMatrix<T>& u, const std::vector<T>& s, const HostMatrix<T>& v,
                          const HostMatrix<T>& a) const {
        const Mat<double> sd = test::vec(s).template cast<double>().asDiagonal();
        const Mat<double> usv = mat(u).template cast<double>() * sd * mat(v).template cast<double>().transpose();
        return test::relative_error(usv, mat(a));
    }

    /// max_i |g_i - c_i|: for values whose error scales with ||C||, not with themselves.
    template <class T>
    double abs_values(const std::vector<T>& got, const std::vector<T>& expected) {
        REQUIRE(got.size() == expected.size());
        double diff = 0;
        for (std::size_t i = 0; i < got.size(); ++i) diff = std::max(diff, std::abs(double(got[i]) - double(expected[i])));
        return diff;
    }

    /// max_i |g_i - c_i| / max_i |c_i| (0 for two empty vectors).
    template <class T>
    double rel_values(const std::vector<T>& got, const std::vector<T>& expected) {
        double scale = 0;
        for (T e : expected) scale = std::max(scale, std::abs(double(e)));
        return abs_values(got, expected) / std::max(scale, 1e-300);
    }

    /// The lower triangle (diagonal included), the rest 0.
    template <class T>
    HostMatrix<T> lower(const HostMatrix<T>& m) const {
        return cpu_.download(Mat<T>(mat(m).template triangularView<Eigen::Lower>()));
    }

    template <class T>
    HostMatrix<T> strictly_upper(const HostMatrix<T>& m) const {
        return cpu_.download(Mat<T>(mat(m).template triangularView<Eigen::StrictlyUpper>()));
    }

private:
    template <class T>
    Mat<T> mat(const HostMatrix<T>& h) const {
        return cpu_.upload(h);
    }

    template <class T1, class T2>
    void same_shape(const HostMatrix<T1>& got, const HostMatrix<T2>& expected) {
        REQUIRE(got.rows() == expected.rows());
        REQUIRE(got.cols() == expected.cols());
    }

    loranull::CpuBackend cpu_;
};

}  // namespace parity
