// libFuzzer target for io::HfCheckpointReader: an HF folder's config.json,
// model.safetensors.index.json and one weights file, from one input of three
// parts (fuzz_input.hpp):
//
//   config.json --8<-- model.safetensors.index.json --8<-- weights
//
// An empty index part means a single-file checkpoint (the weights are
// model.safetensors); otherwise the weights are the shard
// model-00001-of-00001.safetensors. The reader must then parse the config,
// list the files, check every expected tensor from the headers (what
// loranull-build does before any work) and read block 0, or fail with a
// loranull::error. A config's sizes are limited by nothing but the file that
// must hold the weights, so a huge one must be refused, not allocated.
#include <cstddef>
#include <cstdint>

#include <loranull/backend/cpu/cpu_backend.hpp>
#include <loranull/io/hf_checkpoint.hpp>

#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto part = fuzz_input::parts(data, size, 3);
    const fuzz_input::Scratch scratch;
    if (!scratch.write("config.json", part[0])) return 0;
    if (!part[1].empty() && !scratch.write("model.safetensors.index.json", part[1])) return 0;
    if (!scratch.write(part[1].empty() ? "model.safetensors" : "model-00001-of-00001.safetensors", part[2])) return 0;
    try {
        loranull::io::HfCheckpointReader checkpoint(fuzz_input::Scratch::dir());
        const auto files = checkpoint.files();
        if (files.empty()) __builtin_trap();
        checkpoint.check_all();
        loranull::CpuBackend cpu;
        const auto block = checkpoint.load_block<double>(cpu, 0);
        (void)block;
    } catch (const loranull::error&) {
        // a malformed or inconsistent folder: the expected, clear failure
    }
    return 0;
}
