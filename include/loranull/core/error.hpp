#pragma once
// loranull::error and the checks every public entry runs on its arguments.
//
// A message always names the function, the argument and what was wrong with
// it (shapes included), e.g.
//   "loranull::Covariance::add: X has 5 rows, expected 4 (X is 5 x 10)".

#include <cmath>
#include <cstddef>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace loranull {

/// The one exception type of the library. Derived from std::runtime_error so
/// that callers who do not care about loranull specifically still catch it.
class error : public std::runtime_error {
public:
    explicit error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {

template <class... Parts>
std::string concat(Parts&&... parts) {
    std::ostringstream out;
    (out << ... << std::forward<Parts>(parts));
    return out.str();
}

}  // namespace detail

/// Throws loranull::error("loranull::<where>: <parts...>").
template <class... Parts>
[[noreturn]] void fail(std::string_view where, Parts&&... parts) {
    throw error(detail::concat("loranull::", where, ": ", std::forward<Parts>(parts)...));
}

/// Throws unless `condition` holds; the message is only built on failure.
template <class... Parts>
void require(bool condition, std::string_view where, Parts&&... parts) {
    if (!condition) fail(where, std::forward<Parts>(parts)...);
}

}  // namespace loranull
