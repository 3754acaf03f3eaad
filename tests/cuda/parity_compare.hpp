#pragma once
// The CPU half of the parity table (parity_table.hpp): one doctest test case
// per row of a case list and T (float, double). Each makes the case's items on
// CpuBackend, runs them there (the reference) and on the backend under test
// (run_on_device), and applies the case's check. Compiled by g++ (Eigen).
//
// Every test case is decorated with gpu_test::requires_gpu(): without a CUDA
// device it is skipped and the main says so ("no CUDA device: N GPU tests
// skipped"); the emulation reports a device.
#include <doctest/doctest.h>

#include <loranull/backend/cpu/cpu_backend.hpp>
#include <loranull/backend/cpu/nn_kernels.hpp>

#include "gpu_test.hpp"
#include "parity_check.hpp"
#include "parity_table.hpp"

namespace parity {

template <class Case, class T>
void compare() {
    loranull::CpuBackend cpu;
    Check check;
    for (const auto& item : Case::template items<T>(cpu)) {
        CAPTURE(item.label);
        const auto expected = Case::template run<T>(cpu, item);
        const auto got = run_on_device<Case, T>(item);
        Case::template check<T>(check, item, got, expected);
    }
}

}  // namespace parity

/// One TEST_CASE_TEMPLATE (float, double) for the table row `Case`.
#define LORANULL_PARITY_TEST_CASE(Case)                                                                  \
    TEST_CASE_TEMPLATE(parity::Case::title * gpu_test::requires_gpu(), T, float, double) {            \
        parity::compare<parity::Case, T>();                                                             \
    }
