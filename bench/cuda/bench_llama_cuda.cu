// bench_llama_cuda: training-step throughput of the LLaMA model on the GPU
// (LlamaModel<CudaBackend, float>), in tokens per second: the configurations
// and the step of bench/bench_llama.cpp (its CPU twin):
//
//   config   dim  layers heads hidden vocab   parameters   batch
//   small    128    4      4    344    256      ~0.86 M     8 x 256
//   medium   512    6      8   1376   2048      ~21 M       4 x 256
//   regimes: full fine-tuning (every parameter, AdamW) and LoRA r = 16
//   (alpha 32) on all seven projections of every block (factors only).
//
// A step is zero_grad + forward + cross-entropy (the loss reaches the host) +
// backward + AdamW with gradient clipping (a norm per parameter reaches the
// host); the iteration ends with a stream synchronisation, so wall time is
// the step's. The peer is bench/pytorch_llama.py --device cuda (PyTorch eager,
// same configurations); scripts/gpu-check.sh runs both when torch with CUDA is
// there.
//
// The NN kernels are the first, deliberately naive versions (one thread per
// output element, per softmax column: backend/cuda/nn_kernels.hpp): these
// numbers are a baseline, not a target met.
//
// Without a CUDA device the program says so and exits 0.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <loranull/backend/cuda/cuda_backend.hpp>
#include <loranull/llama/model.hpp>
#include <loranull/llama/train.hpp>
#include <loranull/lora/initialisers.hpp>

namespace {

using namespace loranull;
constexpr Index kSeq = 256;

/// Never destroyed (see tests/cuda/gpu_backend.hpp): no handle teardown at exit.
CudaBackend& backend() {
    static CudaBackend* instance = new CudaBackend(0);
    return *instance;
}

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
    CudaBackend& gpu = backend();
    LlamaModel<CudaBackend, float> model(gpu, config_for(which));
    model.init_random(1);
    if (use_lora) {
        for (auto& block : model.blocks)
            for (auto& p : block.proj) p.attach(gpu, lora(gpu, p.weight, LoraConfig{16, 32.0, 2}), Trainable::both);
    } else {
        model.set_full_finetune(true);
    }
    Rng rng(3);
    std::vector<std::int32_t> tokens(static_cast<std::size_t>(batch * kSeq)), targets(tokens.size());
    for (std::size_t t = 0; t < tokens.size(); ++t) {
        tokens[t] = static_cast<std::int32_t>(rng.next_u64() % static_cast<std::uint64_t>(model.config.vocab_size));
        targets[t] = static_cast<std::int32_t>(rng.next_u64() % static_cast<std::uint64_t>(model.config.vocab_size));
    }
    AdamW<CudaBackend, float> optimizer;
    auto step = [&] {
        model.zero_grad();
        const double loss = model.loss(tokens, targets, kSeq);
        model.backward();
        optimizer.step(gpu, model.parameters(), 1e-4);
        gpu.synchronize();
        return loss;
    };
    const double first_loss = step();  // warm-up: library initialisation, the memory pool grows
    std::int64_t trainable = 0;
    for (const auto& p : model.parameters())
        if (p.grad) trainable += p.value->size();
    double last_loss = first_loss;
    for (auto _ : state) last_loss = step();
    state.counters["tokens/s"] = benchmark::Counter(double(batch * kSeq), benchmark::Counter::kIsIterationInvariantRate);
    state.counters["params_M"] = double(model.config.parameter_count()) / 1e6;
    state.counters["trainable_M"] = double(trainable) / 1e6;
    state.counters["loss_first"] = first_loss;
    state.counters["loss_last"] = last_loss;
    state.SetLabel(std::string(which == 0 ? "small" : "medium") + (use_lora ? " lora-r16" : " full"));
}

std::string device_description() {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return "CUDA device 0";
    return std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ", " +
           std::to_string(prop.multiProcessorCount) + " SMs)";
}

}  // namespace

int main(int argc, char** argv) {
    if (loranull::cuda_device_count() == 0) {
        std::printf("no CUDA device: GPU LLaMA benchmarks skipped\n");
        return 0;
    }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    try {
        benchmark::AddCustomContext("cuda_device", device_description());
        benchmark::RegisterBenchmark("llama_train_step", train_step)
            ->ArgNames({"config", "lora", "batch"})
            ->Args({0, 0, 8})
            ->Args({0, 1, 8})
            ->Args({1, 0, 4})
            ->Args({1, 1, 4})
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
        benchmark::RunSpecifiedBenchmarks();
    } catch (const loranull::error& e) {
        std::fprintf(stderr, "bench_llama_cuda: %s\n", e.what());
        benchmark::Shutdown();
        return 1;
    }
    benchmark::Shutdown();
    return 0;
}
