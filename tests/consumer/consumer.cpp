// Uses the umbrella header as an outside project would: the null space of a
// covariance, a LLaMA model written as an HF checkpoint, and the block-streamed
// adapter builder run on it, each checked by one result.
#include <loranull/loranull.hpp>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace loranull;

int main(int argc, char** argv) {
    CpuBackend cpu;
    Rng rng(1);
    Covariance<CpuBackend> covariance(cpu, 8);
    covariance.add(cpu.upload(random_normal<float>(8, 64, rng)));
    const auto null_space = loranull::null_space(covariance, 2);
    std::printf("consumer: null space %td x %td, energy fraction %.3g\n", null_space.dim(), null_space.rank(),
                null_space.energy_fraction());
    if (null_space.rank() != 2 || null_space.energy_fraction() >= 0.25) return 1;

    // A tiny LLaMA, saved as an HF checkpoint, and 48 calibration tokens.
    const fs::path work = argc > 1 ? fs::path(argv[1]) : fs::temp_directory_path() / "loranull_consumer";
    fs::remove_all(work);
    LlamaConfig config;
    config.dim = 16;
    config.n_layers = 2;
    config.n_heads = 2;
    config.n_kv_heads = 1;
    config.hidden_dim = 24;
    config.vocab_size = 32;
    config.max_seq_len = 16;
    LlamaModel<CpuBackend, float> model(cpu, config);
    model.init_random(7);
    io::save_hf_checkpoint(model, work / "model");
    std::vector<std::int64_t> ids;
    for (int i = 0; i < 4 * 12; ++i) ids.push_back((7 * i + 3) % config.vocab_size);
    io::SafetensorsWriter calib;
    calib.add_integers("input_ids", ids, {4, 12});
    calib.write(work / "calib.safetensors");

    // LoRA-Null adapters for it, from the library (no tool).
    pipeline::BuildOptions options;
    options.model = (work / "model").string();
    options.calib = (work / "calib.safetensors").string();
    options.method = "lora-null";
    options.rank = 2;
    options.out = (work / "out").string();
    options.allow_rank_deficient = true;  // a toy calibration: warn, do not stop
    const pipeline::BuildResult result = pipeline::AdapterBuilder<CpuBackend>(cpu, options).run();
    const bool written = fs::exists(work / "out" / "adapter" / "adapter_config.json") &&
                         fs::exists(work / "out" / "model" / "model.safetensors");
    const double reconstruction = result.report["layers"][0]["modules"][0]["reconstruction"];
    std::printf("consumer: builder wrote %s, reconstruction %.1e\n", written ? "model + adapter" : "NOTHING", reconstruction);
    return written && reconstruction < 1e-10 ? 0 : 1;
}
