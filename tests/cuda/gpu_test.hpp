#pragma once
// What every GPU test file shares: the decorator that skips a test case when
// there is no CUDA device, and counts the cases it decorates so that the test
// main (gpu_main.cpp) can say how many were skipped.
//
//   TEST_CASE("..." * gpu_test::requires_gpu()) { ... }
//   TEST_CASE_TEMPLATE("..." * gpu_test::requires_gpu(), T, float, double) { ... }
//
// The decorator runs once per registered case (per type for templates), at
// static-initialisation time, before main.

#include <doctest/doctest.h>

#include "parity_device.hpp"

namespace gpu_test {

/// Number of test cases registered with requires_gpu().
inline int& registered() {
    static int count = 0;
    return count;
}

/// True when no usable CUDA device is visible (asked once).
inline bool no_device() {
    static const bool none = parity::device_count() == 0;
    return none;
}

/// doctest decorator: skip(true) without a device; counts the case.
inline doctest::skip requires_gpu() {
    ++registered();
    return doctest::skip(no_device());
}

}  // namespace gpu_test
