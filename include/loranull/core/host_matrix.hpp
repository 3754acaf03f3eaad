#pragma once
// HostMatrix<T>: a plain column-major matrix in host memory.
//
// It is the exchange format between the layers that must not know each other:
// io/ reads files into it, backends upload it to their own matrix type and
// download results back into it, and core's RNG fills it (so that every
// backend sees the same random numbers for the same seed).

#include <algorithm>
#include <cmath>
#include <vector>

#include "loranull/core/error.hpp"
#include "loranull/core/types.hpp"

namespace loranull {

template <class T>
class HostMatrix {
public:
    HostMatrix() = default;
    HostMatrix(Index rows, Index cols, T fill = T(0)) : rows_(rows), cols_(cols) {
        require(rows >= 0 && cols >= 0, "HostMatrix", "negative shape ", shape_string(rows, cols));
        data_.assign(static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols), fill);
    }

    Index rows() const { return rows_; }
    Index cols() const { return cols_; }
    Index size() const { return rows_ * cols_; }

    /// Element (i, j), column-major: data()[i + j * rows()].
    T& operator()(Index i, Index j) { return data_[static_cast<std::size_t>(i + j * rows_)]; }
    const T& operator()(Index i, Index j) const { return data_[static_cast<std::size_t>(i + j * rows_)]; }

    T* data() { return data_.data(); }
    const T* data() const { return data_.data(); }

    bool operator==(const HostMatrix&) const = default;

private:
    Index rows_ = 0;
    Index cols_ = 0;
    std::vector<T> data_;  // rows_ * cols_, column-major
};

/// True when no entry is NaN or +-Inf.
template <class T>
bool all_finite(const T* data, Index count) {
    return std::all_of(data, data + count, [](T v) { return std::isfinite(v); });
}

}  // namespace loranull
