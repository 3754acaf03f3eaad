#pragma once
// FNV-1a 64: the one hash of loranull, for identities (settings, calibration
// files, checkpoint fingerprints), never for security.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace loranull {

/// FNV-1a 64 of some bytes, as 16 hex digits.
class Fnv1a {
public:
    void add(const void* data, std::size_t size) {
        const auto* bytes = static_cast<const unsigned char*>(data);
        for (std::size_t i = 0; i < size; ++i) {
            hash_ ^= bytes[i];
            hash_ *= 1099511628211ull;
        }
    }
    std::uint64_t value() const { return hash_; }
    std::string hex() const {
        char text[17];
        std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(hash_));
        return text;
    }

private:
    std::uint64_t hash_ = 1469598103934665603ull;
};

}  // namespace loranull
