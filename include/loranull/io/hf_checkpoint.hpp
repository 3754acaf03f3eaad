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

#include <array>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "loranull/core/error.hpp"
#include "loranull/io/safetensors.hpp"
#include "loranull/llama/calibration.hpp"
#include "loranull/llama/config.hpp"
#include "loranull/llama/model.hpp"

namespace loranull::io {

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
    io::write_text_atomically(dir / "config.json", detail::config_to_json(model.config, dtype_name).dump(2) + "\n");
}

/// An HF LLaMA checkpoint folder opened for reading tensor by tensor: config.json
/// parsed and checked, the index of a sharded checkpoint read, shards opened
/// (headers only) when first needed. What load_hf_checkpoint reads the whole
/// model with, and what a streaming tool reads one block at a time with
/// (load_block), so that no more than one block's weights are ever in memory.
/// Every error names the folder, the file and the tensor.
class HfCheckpointReader {
public:
    /// `where` prefixes error messages (default "HfCheckpointReader(<dir>)").
    explicit HfCheckpointReader(std::filesystem::path dir, std::string where = {})
        : dir_(std::move(dir)), where_(where.empty() ? "HfCheckpointReader(" + dir_.string() + ")" : std::move(where)) {
        require(std::filesystem::is_directory(dir_), where_, "not a folder");
        std::ifstream config_file(dir_ / "config.json");
        require(bool(config_file), where_, "config.json is missing");
        try {
            config_json_ = nlohmann::json::parse(config_file);
        } catch (const nlohmann::json::exception& e) {
            fail(where_, "config.json is not valid JSON: ", e.what());
        }
        require(config_json_.is_object(), where_, "config.json is not a JSON object");
        config_ = detail::config_from_json(config_json_, where_);

        // Which file holds which tensor: one model.safetensors, or an index of shards.
        const auto index_path = dir_ / "model.safetensors.index.json";
        if (std::filesystem::exists(index_path)) {
            std::ifstream index_file(index_path);
            try {
                index_json_ = nlohmann::json::parse(index_file);
            } catch (const nlohmann::json::exception& e) {
                fail(where_, "model.safetensors.index.json is not valid JSON: ", e.what());
            }
            require(index_json_.is_object() && index_json_.contains("weight_map") && index_json_["weight_map"].is_object(),
                    where_, "model.safetensors.index.json has no weight_map");
            for (const auto& [name, file] : index_json_["weight_map"].items()) {
                require(file.is_string(), where_, "weight_map entry of '", name, "' is not a file name");
                const std::string f = file.get<std::string>();
                require(!f.empty() && f.find('/') == std::string::npos && f != "." && f != "..", where_,
                        "weight_map entry of '", name, "' is '", f, "', not a file name in the folder");
                file_of_[name] = f;
            }
            require(!file_of_.empty(), where_, "model.safetensors.index.json has an empty weight_map");
        } else {
            require(std::filesystem::exists(dir_ / "model.safetensors"), where_,
                    "neither model.safetensors nor model.safetensors.index.json exists");
        }
    }

    const std::filesystem::path& dir() const { return dir_; }
    const LlamaConfig& config() const { return config_; }
    const nlohmann::json& config_json() const { return config_json_; }
    bool sharded() const { return !file_of_.empty(); }
    /// The index (sharded checkpoints only; null otherwise).
    const nlohmann::json& index_json() const { return index_json_; }

    /// The files holding tensors: {"model.safetensors"}, or the index's shards, sorted.
    std::vector<std::string> files() const {
        if (!sharded()) return {"model.safetensors"};
        std::set<std::string> unique;
        for (const auto& [name, file] : file_of_) unique.insert(file);
        return {unique.begin(), unique.end()};
    }

    /// The file that holds tensor `name` (a sharded checkpoint's index must list it).
    const std::string& file_of(const std::string& name) const {
        static const std::string single = "model.safetensors";
        if (!sharded()) return single;
        auto it = file_of_.find(name);
        require(it != file_of_.end(), where_, "tensor '", name, "' is not in the index's weight_map");
        return it->second;
    }

    /// The reader of `file` (opened, headers validated, on first use).
    const io::SafetensorsReader& reader(const std::string& file, const std::string& for_tensor = {}) {
        auto& reader = readers_[file];
        if (!reader) {
            require(std::filesystem::exists(dir_ / file), where_, sharded() ? "shard " : "", file,
                    for_tensor.empty() ? std::string() : " (holding '" + for_tensor + "')", " is missing");
            reader = std::make_unique<io::SafetensorsReader>(dir_ / file);
        }
        return *reader;
    }

    /// The header entry of tensor `name`, checked: present in its file, a
    /// floating-point dtype, shape [rows, cols] (or [rows] when cols == 1).
    const io::TensorInfo& checked_info(const std::string& name, Index rows, Index cols) {
        const io::SafetensorsReader& r = reader(file_of(name), name);
        require(r.contains(name), where_, "tensor '", name, "' is missing from ", r.path().filename().string());
        const io::TensorInfo& info = r.info(name);
        const bool shape_ok = (info.shape.size() == 2 && info.shape[0] == rows && info.shape[1] == cols) ||
                              (cols == 1 && info.shape.size() == 1 && info.shape[0] == rows);
        require(shape_ok, where_, "tensor '", name, "' has shape ", nlohmann::json(info.shape).dump(), ", expected [",
                rows, cols == 1 ? "" : ", " + std::to_string(cols), "] (in ", r.path().filename().string(), ")");
        require(io::is_floating(info.dtype), where_, "tensor '", name, "' has dtype ", io::dtype_name(info.dtype),
                ", expected F32, F64, F16 or BF16 (in ", r.path().filename().string(), ")");
        return info;
    }

    /// Tensor `name` as a rows x cols matrix of T, checked (checked_info) and finite.
    template <Real T>
    HostMatrix<T> read(const std::string& name, Index rows, Index cols) {
        checked_info(name, rows, cols);
        HostMatrix<T> host = reader(file_of(name)).template read_matrix<T>(name);
        require(all_finite(host.data(), host.size()), where_, "tensor '", name, "' in ", file_of(name),
                " holds NaN or Inf");
        return host;
    }

    /// Every tensor a LLaMA model of this config needs, with its expected
    /// shape {rows, cols} (cols = 1 for vectors), in Hugging Face's order.
    std::vector<std::pair<std::string, std::array<Index, 2>>> expected_tensors() const {
        const LlamaConfig& c = config_;
        std::vector<std::pair<std::string, std::array<Index, 2>>> out;
        out.push_back({"model.embed_tokens.weight", {c.vocab_size, c.dim}});
        for (Index l = 0; l < c.n_layers; ++l) {
            const std::string prefix = "model.layers." + std::to_string(l) + ".";
            out.push_back({prefix + "input_layernorm.weight", {c.dim, 1}});
            out.push_back({prefix + "post_attention_layernorm.weight", {c.dim, 1}});
            for (ProjectionKind kind : all_projections)
                out.push_back({prefix + projection_path(kind) + ".weight", projection_shape(kind)});
        }
        out.push_back({"model.norm.weight", {c.dim, 1}});
        if (!c.tied_embeddings) out.push_back({"lm_head.weight", {c.vocab_size, c.dim}});
        return out;
    }

    /// {out, in} of a projection in this config.
    std::array<Index, 2> projection_shape(ProjectionKind kind) const { return loranull::projection_shape(config_, kind); }

    /// Checks every expected tensor (file present, tensor present, shape,
    /// floating-point dtype) from the headers alone, reading no data: a bad
    /// checkpoint is refused before any work starts.
    void check_all() {
        for (const auto& [name, shape] : expected_tensors()) checked_info(name, shape[0], shape[1]);
    }

    /// Block `layer` alone (norms and the seven projections), read and checked.
    template <Real T, class Bk>
    typename LlamaModel<Bk, T>::Block load_block(Bk& b, Index layer) {
        require(layer >= 0 && layer < config_.n_layers, where_, "layer ", layer, " of a model with ", config_.n_layers,
                " layers");
        typename LlamaModel<Bk, T>::Block block;
        const std::string prefix = "model.layers." + std::to_string(layer) + ".";
        block.attn_norm = b.upload(read<T>(prefix + "input_layernorm.weight", config_.dim, 1));
        block.mlp_norm = b.upload(read<T>(prefix + "post_attention_layernorm.weight", config_.dim, 1));
        for (ProjectionKind kind : all_projections) {
            const auto shape = projection_shape(kind);
            block[kind].weight = b.upload(read<T>(prefix + projection_path(kind) + ".weight", shape[0], shape[1]));
        }
        return block;
    }

private:
    std::filesystem::path dir_;
    std::string where_;
    nlohmann::json config_json_;
    nlohmann::json index_json_;
    LlamaConfig config_;
    std::map<std::string, std::string> file_of_;  // sharded only: tensor -> shard file
    std::map<std::string, std::unique_ptr<io::SafetensorsReader>> readers_;
};

/// Reads an HF LLaMA checkpoint folder onto backend b (any float dtype on disk,
/// converted to T). Every tensor's presence and shape is checked by name.
template <Real T, class Bk>
LlamaModel<Bk, T> load_hf_checkpoint(Bk& b, const std::filesystem::path& dir) {
    HfCheckpointReader checkpoint(dir, "load_hf_checkpoint(" + dir.string() + ")");
    LlamaModel<Bk, T> model(b, checkpoint.config());
    const LlamaConfig& c = model.config;
    model.embed = b.transpose(b.upload(checkpoint.read<T>("model.embed_tokens.weight", c.vocab_size, c.dim)));
    for (Index l = 0; l < c.n_layers; ++l) model.blocks[static_cast<std::size_t>(l)] = checkpoint.load_block<T>(b, l);
    model.final_norm = b.upload(checkpoint.read<T>("model.norm.weight", c.dim, 1));
    if (!c.tied_embeddings) model.lm_head = b.upload(checkpoint.read<T>("lm_head.weight", c.vocab_size, c.dim));
    return model;
}

}  // namespace loranull::io
