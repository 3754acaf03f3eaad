// libFuzzer target for io::read_peft_adapter and io::merge_peft_adapter (what
// loranull-eval --adapter does): adapter_config.json and
// adapter_model.safetensors from one input of two parts (fuzz_input.hpp):
//
//   adapter_config.json --8<-- adapter_model.safetensors
//
// An adapter that reads is merged into a fixed small model (hidden size 8,
// 2 layers, 2 heads, intermediate size 12): either a loranull::error, or every
// merged weight is finite (a merge must never make NaN or Inf weights).
#include <cmath>
#include <cstddef>
#include <cstdint>

#include <loranull/backend/cpu/cpu_backend.hpp>
#include <loranull/io/peft_adapter.hpp>

#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto part = fuzz_input::parts(data, size, 2);
    const fuzz_input::Scratch scratch;
    if (!scratch.write("adapter_config.json", part[0]) || !scratch.write("adapter_model.safetensors", part[1])) return 0;
    try {
        const loranull::io::PeftAdapter adapter = loranull::io::read_peft_adapter(fuzz_input::Scratch::dir());
        loranull::CpuBackend cpu;
        loranull::LlamaConfig config;
        config.dim = 8, config.n_layers = 2, config.n_heads = 2, config.n_kv_heads = 2, config.hidden_dim = 12;
        config.vocab_size = 16, config.max_seq_len = 16;
        loranull::LlamaModel<loranull::CpuBackend, double> model(cpu, config);
        model.init_random(1);
        loranull::io::merge_peft_adapter(model, adapter);
        for (const auto& block : model.blocks)
            for (loranull::ProjectionKind kind : loranull::all_projections)
                if (!block[kind].weight.allFinite()) __builtin_trap();
    } catch (const loranull::error&) {
        // a malformed adapter, or one that does not fit the model: the expected, clear failure
    }
    return 0;
}
