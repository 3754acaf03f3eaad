// libFuzzer target for io::load_covariance: a covariance file (safetensors
// with loranull's metadata, docs/design.md) loaded in double and in float.
// Either a loranull::error, or a covariance whose matrix C is finite.
#include <cstddef>
#include <cstdint>

#include <loranull/backend/cpu/cpu_backend.hpp>
#include <loranull/io/covariance_file.hpp>

#include "fuzz_input.hpp"

namespace {

template <class T>
void load(loranull::CpuBackend& cpu, const std::filesystem::path& path) {
    try {
        const auto c = loranull::io::load_covariance<T>(cpu, path);
        // Loaded means usable: C = S / tokens (or / the divisor) is finite.
        if (!c.empty() && !c.matrix().allFinite()) __builtin_trap();
    } catch (const loranull::error&) {
        // a malformed file, or one of the other precision: the expected, clear failure
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const fuzz_input::Scratch scratch;
    if (!scratch.write("covariance.safetensors", fuzz_input::parts(data, size, 1)[0])) return 0;
    loranull::CpuBackend cpu;
    load<double>(cpu, scratch.path("covariance.safetensors"));
    load<float>(cpu, scratch.path("covariance.safetensors"));
    return 0;
}
