#pragma once
// test::error_message: the message of the loranull::error a callable throws
// ("" when it throws none). Needs neither Eigen nor CUDA, so every test suite,
// the GPU ones compiled by nvcc included, shares this one.

#include <string>

#include <loranull/core/error.hpp>

namespace test {

template <class F>
std::string error_message(F&& f) {
    try {
        f();
    } catch (const loranull::error& e) {
        return e.what();
    }
    return "";
}

}  // namespace test
