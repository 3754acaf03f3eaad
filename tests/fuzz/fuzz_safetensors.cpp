// libFuzzer target for io::SafetensorsReader.
//
// Each input is written to a file of a private folder (the reader takes a
// path), opened, and every tensor in it is read back: floating tensors as matrices of
// float and double, integer tensors as integers. Any loranull::error is the
// expected outcome for a bad file; anything else (another exception type, a
// sanitizer report, a hang) is a bug in the reader.
//
// Built by tests/fuzz/CMakeLists.txt with clang and
// -fsanitize=fuzzer,address,undefined when LORANULL_FUZZ=ON (see
// scripts/run-fuzzer.sh); the same file also links with a plain main
// (replay_main.cpp) so that every compiler replays the seed corpus as a test.
#include <cstddef>
#include <cstdint>

#include <loranull/io/safetensors.hpp>

#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const fuzz_input::Scratch scratch;
    if (!scratch.write("input.safetensors", fuzz_input::parts(data, size, 1)[0])) return 0;
    const auto path = scratch.path("input.safetensors");
    try {
        loranull::io::SafetensorsReader reader(path);
        for (const auto& [name, info] : reader.tensors()) {
            try {
                if (loranull::io::is_floating(info.dtype)) {
                    const auto f = reader.read_matrix<float>(name);
                    const auto d = reader.read_matrix<double>(name);
                    if (f.rows() != d.rows() || f.cols() != d.cols()) __builtin_trap();
                } else {
                    const auto values = reader.read_integers(name);
                    (void)values;
                }
            } catch (const loranull::error&) {
                // a tensor that is not a matrix, or of an unsupported dtype
            }
        }
        for (const auto& [key, value] : reader.metadata()) (void)key, (void)value;
    } catch (const loranull::error&) {
        // a malformed file: the expected, clear failure
    }
    return 0;
}
