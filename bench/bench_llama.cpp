// bench_llama: training-step throughput of the LLaMA model on the CPU, in
// tokens per second, for two sizes and two regimes:
//
//   config   dim  layers heads hidden vocab   parameters
//   small    128    4      4    344    256      ~0.86 M
//   medium   512    6      8   1376   2048      ~21 M
//   regimes: full fine-tuning (every parameter, AdamW) and LoRA r = 16 on all
//   seven projections of every block (factors only).
//
// A step is forward + cross-entropy + backward + AdamW on a batch of
// `batch` sequences of 256 tokens. bench/pytorch_llama.py runs the same
// configurations in PyTorch eager on the CPU with the same thread count; the
// target is >= 1.0x its tokens/s.
//
//   cmake --build build --target bench_llama && build/bench/bench_llama
#include <cstdlib>
#include <string_view>

#include <benchmark/benchmark.h>

#include "loranull/backend/cpu/cpu_backend.hpp"
#include "loranull/llama/model.hpp"
#include "loranull/llama/train.hpp"
#include "loranull/lora/initialisers.hpp"

namespace {

using namespace loranull;
constexpr Index kSeq = 256;

LlamaConfig config_for(int which) {
    LlamaConfig c;
    c.max_seq_len = kSeq;
    if (which == 0) {
        c.dim = 128, c.n_layers = 4, c.n_heads = 4, c.n_kv_heads = 4, c.hidden_dim = 344, c.vocab_size = 256;
    } else {
        c.dim = 512, c.n_layers = 6, c.n_heads = 8, c.n_kv_heads = 8, c.hidden_dim = 1376, c.vocab_size = 2048;
    }
    return c;
}

void train_step(benchmark::State& state) {
    const int which = static_cast<int>(state.range(0));
    const bool use_lora = state.range(1) != 0;
    const Index batch = state.range(2);
    CpuBackend cpu;
    LlamaModel<CpuBackend, float> model(cpu, config_for(which));
    model.init_random(1);
    std::int64_t trainable = 0;
    if (use_lora) {
        for (auto& block : model.blocks)
            for (auto& p : block.proj) p.attach(cpu, lora(cpu, p.weight, LoraConfig{16, 32.0, 2}), Trainable::both);
    } else {
        model.set_full_finetune(true);
    }
    Rng rng(3);
    std::vector<std::int32_t> tokens(static_cast<std::size_t>(batch * kSeq)), targets(tokens.size());
    for (std::size_t t = 0; t < tokens.size(); ++t) {
        tokens[t] = static_cast<std::int32_t>(rng.next_u64() % static_cast<std::uint64_t>(model.config.vocab_size));
        targets[t] = static_cast<std::int32_t>(rng.next_u64() % static_cast<std::uint64_t>(model.config.vocab_size));
    }
    AdamW<CpuBackend, float> optimizer;
    model.zero_grad();
    for (const auto& p : model.parameters())
        if (p.grad) trainable += p.value->size();
    for (auto _ : state) {
        model.zero_grad();
        benchmark::DoNotOptimize(model.loss(tokens, targets, kSeq));
        model.backward();
        optimizer.step(cpu, model.parameters(), 1e-4);
    }
    state.counters["tokens/s"] = benchmark::Counter(double(batch * kSeq), benchmark::Counter::kIsIterationInvariantRate);
    state.counters["params_M"] = double(model.config.parameter_count()) / 1e6;
    state.counters["trainable_M"] = double(trainable) / 1e6;
    state.SetLabel(std::string(which == 0 ? "small" : "medium") + (use_lora ? " lora-r16" : " full"));
}

}  // namespace

BENCHMARK(train_step)
    ->ArgNames({"config", "lora", "batch"})
    ->Args({0, 0, 8})
    ->Args({0, 1, 8})
    ->Args({1, 0, 4})
    ->Args({1, 1, 4})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(2.0);

BENCHMARK_MAIN();
