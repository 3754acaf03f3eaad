#pragma once
// The model family the tools load (SPEC.md section 9) at toy sizes: each
// family's config.json as its released files spell it (test_families.cpp
// checks the forward of each, test_loranull_finetune.cpp trains each).

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <loranull/backend/cpu/cpu_backend.hpp>
#include <loranull/core/random.hpp>
#include <loranull/io/hf_checkpoint.hpp>
#include <loranull/llama/model.hpp>

namespace test_family {

using namespace loranull;
using json = nlohmann::json;
namespace fs = std::filesystem;

/// A family's config.json, as its released files spell it, at toy sizes.
struct Family {
    std::string name;
    json config;
};

inline std::vector<Family> families() {
    const json base = {{"hidden_act", "silu"}, {"hidden_size", 24}, {"intermediate_size", 40},
                       {"num_attention_heads", 4}, {"num_hidden_layers", 2}, {"vocab_size", 50},
                       {"initializer_range", 0.02}, {"use_cache", true}, {"torch_dtype", "float32"},
                       {"transformers_version", "4.44.0"}};
    std::vector<Family> out;
    json llama2 = base;  // Llama-2-7b-hf
    llama2.update({{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"bos_token_id", 1},
                   {"eos_token_id", 2}, {"max_position_embeddings", 64}, {"num_key_value_heads", 4},
                   {"pretraining_tp", 1}, {"rms_norm_eps", 1e-5}, {"rope_scaling", nullptr},
                   {"tie_word_embeddings", false}});
    out.push_back({"llama-2", llama2});
    json llama3 = base;  // Meta-Llama-3-8B
    llama3.update({{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"attention_bias", false},
                   {"attention_dropout", 0.0}, {"bos_token_id", 128000}, {"eos_token_id", 128001},
                   {"max_position_embeddings", 64}, {"num_key_value_heads", 2}, {"rms_norm_eps", 1e-5},
                   {"rope_theta", 500000.0}, {"tie_word_embeddings", false}});
    out.push_back({"llama-3", llama3});
    json llama31 = llama3;  // Llama-3.1-8B: the llama3 frequency bands (L chosen so that all three apply)
    llama31.update({{"mlp_bias", false}, {"eos_token_id", {128001, 128008, 128009}}, {"rope_theta", 10000.0},
                    {"rope_scaling", {{"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                                      {"original_max_position_embeddings", 256}, {"rope_type", "llama3"}}}});
    out.push_back({"llama-3.1", llama31});
    json llama32 = llama31;  // Llama-3.2-1B: head_dim given, tied embeddings
    llama32.update({{"head_dim", 8}, {"tie_word_embeddings", true}});
    llama32["rope_scaling"]["factor"] = 32.0;
    out.push_back({"llama-3.2", llama32});
    json biased = llama2;  // attention_bias and mlp_bias, linear scaling in the old spelling ("type")
    biased.update({{"attention_bias", true}, {"mlp_bias", true}, {"rope_scaling", {{"type", "linear"}, {"factor", 2.0}}}});
    out.push_back({"llama-biased", biased});
    json mistral = base;  // Mistral-7B-v0.1, with head_dim as Mistral-NeMo has it
    mistral.update({{"architectures", {"MistralForCausalLM"}}, {"model_type", "mistral"}, {"bos_token_id", 1},
                    {"eos_token_id", 2}, {"max_position_embeddings", 64}, {"num_key_value_heads", 2},
                    {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0}, {"sliding_window", 12}, {"head_dim", 10},
                    {"tie_word_embeddings", false}});
    out.push_back({"mistral", mistral});
    json qwen2 = base;  // Qwen2-0.5B: q/k/v biases, tied, NTK-free dynamic rope in a fine-tuned variant
    qwen2.update({{"architectures", {"Qwen2ForCausalLM"}}, {"model_type", "qwen2"}, {"attention_dropout", 0.0},
                  {"bos_token_id", 151643}, {"eos_token_id", 151643}, {"max_position_embeddings", 64},
                  {"max_window_layers", 2}, {"num_key_value_heads", 2}, {"rms_norm_eps", 1e-6},
                  {"rope_theta", 1000000.0}, {"sliding_window", 64}, {"tie_word_embeddings", true},
                  {"use_sliding_window", false}, {"rope_scaling", {{"rope_type", "dynamic"}, {"factor", 2.0}}}});
    out.push_back({"qwen2", qwen2});
    return out;
}

/// Writes a random model of `family` (biases random where the config has them).
inline fs::path write_family(const Family& f, const fs::path& folder) {
    const fs::path path = folder / f.name;
    fs::create_directories(path);
    const LlamaConfig config = io::detail::config_from_json(f.config, f.name);
    CpuBackend cpu;
    LlamaModel<CpuBackend, float> model(cpu, config);
    model.init_random(17);
    Rng rng(18);
    for (auto& block : model.blocks) {  // norm gains other than 1
        block.attn_norm = cpu.upload(random_uniform<float>(config.dim, 1, rng, 0.5, 1.5));
        block.mlp_norm = cpu.upload(random_uniform<float>(config.dim, 1, rng, 0.5, 1.5));
    }
    io::save_hf_checkpoint(model, path);
    std::ofstream(path / "config.json") << f.config.dump(2);  // the family's own spelling, not ours
    return path;
}

}  // namespace test_family
