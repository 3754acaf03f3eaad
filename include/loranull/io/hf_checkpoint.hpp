#pragma once
// Hugging Face LLaMA checkpoints: a folder with config.json and
// model.safetensors (or model-0000i-of-0000N.safetensors shards listed in
// model.safetensors.index.json), tensors named as transformers names them:
//
//   model.embed_tokens.weight                          [vocab, dim]
//   model.layers.N.input_layernorm.weight              [dim]
//   model.layers.N.self_attn.{q,k,v,o}_proj.weight     [out, in]
//   model.layers.N.post_attention_layernorm.weight     [dim]
//   model.layers.N.mlp.{gate,up,down}_proj.weight      [out, in]
//   model.norm.weight                                  [dim]
//   lm_head.weight                                     [vocab, dim] (absent when tied)
//
// q/k rows are in HF's order: our RoPE is HF's "rotate half", so nothing is
// permuted. Adapters are merged on save (a checkpoint is a dense model).

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "loranull/core/error.hpp"
#include "loranull/io/safetensors.hpp"
#include "loranull/llama/config.hpp"
#include "loranull/llama/model.hpp"

namespace loranull {

namespace detail {

inline nlohmann::json config_to_json(const LlamaConfig& c, const std::string& dtype) {
    return {{"architectures", {"LlamaForCausalLM"}},
            {"model_type", "llama"},
            {"hidden_size", c.dim},
            {"intermediate_size", c.hidden_dim},
            {"num_attention_heads", c.n_heads},
            {"num_hidden_layers", c.n_layers},
            {"num_key_value_heads", c.n_kv_heads},
            {"vocab_size", c.vocab_size},
            {"max_position_embeddings", c.max_seq_len},
            {"rope_theta", c.rope_theta},
            {"rms_norm_eps", c.norm_eps},
            {"tie_word_embeddings", c.tied_embeddings},
            {"hidden_act", "silu"},
            {"torch_dtype", dtype}};
}

inline LlamaConfig config_from_json(const nlohmann::json& j, const std::string& where) {
    auto get_int = [&](const char* key) -> Index {
        require(j.contains(key) && j[key].is_number_integer(), where, "config.json: '", key,
                "' is missing or not an integer");
        return j[key].get<Index>();
    };
    LlamaConfig c;
    c.dim = get_int("hidden_size");
    c.hidden_dim = get_int("intermediate_size");
    c.n_heads = get_int("num_attention_heads");
    c.n_layers = get_int("num_hidden_layers");
    c.n_kv_heads = j.contains("num_key_value_heads") && !j["num_key_value_heads"].is_null()
                       ? get_int("num_key_value_heads")
                       : c.n_heads;
    c.vocab_size = get_int("vocab_size");
    c.max_seq_len = j.contains("max_position_embeddings") ? get_int("max_position_embeddings") : 2048;
    c.rope_theta = j.value("rope_theta", 10000.0);
    c.norm_eps = j.value("rms_norm_eps", 1e-6);
    c.tied_embeddings = j.value("tie_word_embeddings", false);
    if (j.contains("model_type"))
        require(j["model_type"] == "llama", where, "config.json: model_type is ", j["model_type"].dump(),
                ", expected \"llama\"");
    // What this model does not compute must be refused, never ignored: a
    // scaled RoPE, biases or a decoupled head size would load and give wrong
    // logits silently.
    require(!j.contains("rope_scaling") || j["rope_scaling"].is_null(), where,
            "config.json: rope_scaling ", j.contains("rope_scaling") ? j["rope_scaling"].dump() : "",
            " is not supported (plain RoPE only)");
    for (const char* bias : {"attention_bias", "mlp_bias"})
        require(!j.contains(bias) || j[bias] == false, where, "config.json: ", bias, " = true is not supported");
    if (j.contains("head_dim") && !j["head_dim"].is_null())
        require(j["head_dim"].is_number_integer() && j["head_dim"].get<Index>() * c.n_heads == c.dim, where,
                "config.json: head_dim ", j["head_dim"].dump(), " differs from hidden_size / num_attention_heads = ",
                c.n_heads > 0 ? c.dim / c.n_heads : 0, " (not supported)");
    if (j.contains("hidden_act"))
        require(j["hidden_act"] == "silu", where, "config.json: hidden_act ", j["hidden_act"].dump(),
                " is not supported (silu only)");
    c.validate();
    return c;
}

}  // namespace detail

/// Writes model (adapters merged) to folder `dir` as config.json +
/// model.safetensors in `dtype` (F32, BF16, F16 or F64).
template <class Bk, Real T>
void save_hf_checkpoint(const LlamaModel<Bk, T>& model, const std::filesystem::path& dir, io::Dtype dtype = io::Dtype::F32) {
    Bk& b = model.backend();
    std::filesystem::create_directories(dir);
    io::SafetensorsWriter writer;
    writer.set_metadata("format", "pt");
    writer.add("model.embed_tokens.weight", b.download(b.transpose(model.embed)), dtype);
    for (std::size_t l = 0; l < model.blocks.size(); ++l) {
        const auto& block = model.blocks[l];
        const std::string prefix = "model.layers." + std::to_string(l) + ".";
        writer.add(prefix + "input_layernorm.weight", b.download(block.attn_norm), dtype);
        writer.add(prefix + "post_attention_layernorm.weight", b.download(block.mlp_norm), dtype);
        for (ProjectionKind kind : all_projections)
            writer.add(prefix + projection_path(kind) + ".weight", b.download(block[kind].effective_weight()), dtype);
    }
    writer.add("model.norm.weight", b.download(model.final_norm), dtype);
    if (!model.config.tied_embeddings) writer.add("lm_head.weight", b.download(model.lm_head), dtype);
    writer.write(dir / "model.safetensors");
    const std::string dtype_name = dtype == io::Dtype::BF16 ? "bfloat16" : dtype == io::Dtype::F16 ? "float16"
                                   : dtype == io::Dtype::F64 ? "float64" : "float32";
    const auto tmp = dir / "config.json.tmp";
    {
        std::ofstream out(tmp);
        out << detail::config_to_json(model.config, dtype_name).dump(2) << "\n";
        require(bool(out), "save_hf_checkpoint", "cannot write ", tmp.string());
    }
    std::filesystem::rename(tmp, dir / "config.json");
}

/// Reads an HF LLaMA checkpoint folder onto backend b (any float dtype on disk,
/// converted to T). Every tensor's presence and shape is checked by name.
template <Real T, class Bk>
LlamaModel<Bk, T> load_hf_checkpoint(Bk& b, const std::filesystem::path& dir) {
    const std::string where = "load_hf_checkpoint(" + dir.string() + ")";
    require(std::filesystem::is_directory(dir), where, "not a folder");
    std::ifstream config_file(dir / "config.json");
    require(bool(config_file), where, "config.json is missing");
    nlohmann::json config_json;
    try {
        config_json = nlohmann::json::parse(config_file);
    } catch (const nlohmann::json::exception& e) {
        fail(where, "config.json is not valid JSON: ", e.what());
    }
    LlamaModel<Bk, T> model(b, detail::config_from_json(config_json, where));

    // Which file holds which tensor: one model.safetensors, or an index of shards.
    std::map<std::string, std::string> file_of;
    std::map<std::string, std::unique_ptr<io::SafetensorsReader>> readers;
    const auto index_path = dir / "model.safetensors.index.json";
    if (std::filesystem::exists(index_path)) {
        std::ifstream index_file(index_path);
        nlohmann::json index;
        try {
            index = nlohmann::json::parse(index_file);
        } catch (const nlohmann::json::exception& e) {
            fail(where, "model.safetensors.index.json is not valid JSON: ", e.what());
        }
        require(index.contains("weight_map") && index["weight_map"].is_object(), where,
                "model.safetensors.index.json has no weight_map");
        for (const auto& [name, file] : index["weight_map"].items()) {
            require(file.is_string(), where, "weight_map entry of '", name, "' is not a file name");
            file_of[name] = file.template get<std::string>();
        }
    } else {
        require(std::filesystem::exists(dir / "model.safetensors"), where,
                "neither model.safetensors nor model.safetensors.index.json exists");
    }
    auto reader_for = [&](const std::string& name) -> io::SafetensorsReader& {
        const std::string file = file_of.empty() ? "model.safetensors" : file_of.count(name) ? file_of[name] : "";
        require(!file.empty(), where, "tensor '", name, "' is not in the index's weight_map");
        auto& reader = readers[file];
        if (!reader) {
            require(std::filesystem::exists(dir / file), where, "shard ", file, " (holding '", name, "') is missing");
            reader = std::make_unique<io::SafetensorsReader>(dir / file);
        }
        return *reader;
    };
    auto load = [&](const std::string& name, Index rows, Index cols) {
        auto& reader = reader_for(name);
        require(reader.contains(name), where, "tensor '", name, "' is missing from ", reader.path().filename().string());
        const auto& info = reader.info(name);
        const bool shape_ok = (info.shape.size() == 2 && info.shape[0] == rows && info.shape[1] == cols) ||
                              (cols == 1 && info.shape.size() == 1 && info.shape[0] == rows);
        require(shape_ok, where, "tensor '", name, "' has shape ", nlohmann::json(info.shape).dump(), ", expected [",
                rows, cols == 1 ? "" : ", " + std::to_string(cols), "]");
        HostMatrix<T> host = reader.template read_matrix<T>(name);
        require(all_finite(host.data(), host.size()), where, "tensor '", name, "' holds NaN or Inf");
        return b.upload(host);
    };
    const LlamaConfig& c = model.config;
    model.embed = b.transpose(load("model.embed_tokens.weight", c.vocab_size, c.dim));
    for (std::size_t l = 0; l < model.blocks.size(); ++l) {
        auto& block = model.blocks[l];
        const std::string prefix = "model.layers." + std::to_string(l) + ".";
        block.attn_norm = load(prefix + "input_layernorm.weight", c.dim, 1);
        block.mlp_norm = load(prefix + "post_attention_layernorm.weight", c.dim, 1);
        for (ProjectionKind kind : all_projections) {
            auto& w = block[kind].weight;
            w = load(prefix + projection_path(kind) + ".weight", w.rows(), w.cols());
        }
    }
    model.final_norm = load("model.norm.weight", c.dim, 1);
    if (!c.tied_embeddings) model.lm_head = load("lm_head.weight", c.vocab_size, c.dim);
    return model;
}

}  // namespace loranull
