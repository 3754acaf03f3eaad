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
#include <iterator>
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

inline const char* rope_type_name(RopeScaling::Type t) {
    switch (t) {
        case RopeScaling::Type::none: return "default";
        case RopeScaling::Type::linear: return "linear";
        case RopeScaling::Type::llama3: return "llama3";
        case RopeScaling::Type::dynamic: return "dynamic";
    }
    return "?";
}

/// config.json for `c`, in its family's spelling (what from_json reads back).
inline nlohmann::json config_to_json(const LlamaConfig& c, const std::string& dtype) {
    const std::string architecture = c.model_type == "mistral" ? "MistralForCausalLM"
                                     : c.model_type == "qwen2" ? "Qwen2ForCausalLM"
                                                               : "LlamaForCausalLM";
    nlohmann::json j = {{"architectures", {architecture}},
                        {"model_type", c.model_type},
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
    if (c.head_size > 0) j["head_dim"] = c.head_size;
    if (c.rope_scaling.type != RopeScaling::Type::none) {
        const RopeScaling& s = c.rope_scaling;
        j["rope_scaling"] = {{"rope_type", rope_type_name(s.type)}, {"factor", s.factor}};
        if (s.type == RopeScaling::Type::llama3) {
            j["rope_scaling"]["low_freq_factor"] = s.low_freq_factor;
            j["rope_scaling"]["high_freq_factor"] = s.high_freq_factor;
            j["rope_scaling"]["original_max_position_embeddings"] = s.original_max_position;
        }
    }
    if (c.model_type == "qwen2") {
        j["use_sliding_window"] = c.sliding_window > 0;
        j["sliding_window"] = c.sliding_window > 0 ? c.sliding_window : c.max_seq_len;
    } else {
        if (c.model_type == "mistral") j["sliding_window"] = c.sliding_window > 0 ? nlohmann::json(c.sliding_window) : nlohmann::json(nullptr);
        j["attention_bias"] = c.attention_has_bias();
        j["mlp_bias"] = c.mlp_has_bias();
    }
    return j;
}

/// The families' config.json (transformers' LlamaConfig, MistralConfig,
/// Qwen2Config): every key that changes the computation is read or refused by
/// name (docs/llama.md, "The families"); the rest is metadata.
inline LlamaConfig config_from_json(const nlohmann::json& j, const std::string& where) {
    auto has = [&](const char* key) { return j.contains(key) && !j[key].is_null(); };
    auto get_int = [&](const char* key) -> Index {
        require(has(key) && j[key].is_number_integer(), where, "config.json: '", key, "' is missing or not an integer");
        return j[key].get<Index>();
    };
    auto get_bool = [&](const char* key, bool fallback) {
        if (!has(key)) return fallback;
        require(j[key].is_boolean(), where, "config.json: '", key, "' is ", j[key].dump(), ", expected true or false");
        return j[key].get<bool>();
    };
    auto get_number = [&](const nlohmann::json& o, const char* key, double fallback, const char* in) {
        if (!o.contains(key) || o[key].is_null()) return fallback;
        require(o[key].is_number(), where, "config.json: ", in, "'", key, "' is ", o[key].dump(), ", expected a number");
        return o[key].get<double>();
    };
    LlamaConfig c;
    c.model_type = has("model_type") && j["model_type"].is_string() ? j["model_type"].get<std::string>() : "llama";
    require(c.model_type == "llama" || c.model_type == "mistral" || c.model_type == "qwen2", where,
            "config.json: model_type is ", j.contains("model_type") ? j["model_type"].dump() : "",
            ", expected \"llama\", \"mistral\" or \"qwen2\"");
    c.dim = get_int("hidden_size");
    c.hidden_dim = get_int("intermediate_size");
    c.n_heads = get_int("num_attention_heads");
    c.n_layers = get_int("num_hidden_layers");
    c.n_kv_heads = has("num_key_value_heads") ? get_int("num_key_value_heads") : c.n_heads;
    c.vocab_size = get_int("vocab_size");
    c.max_seq_len = has("max_position_embeddings") ? get_int("max_position_embeddings") : 2048;
    c.rope_theta = get_number(j, "rope_theta", 10000.0, "");
    c.norm_eps = get_number(j, "rms_norm_eps", 1e-6, "");
    c.tied_embeddings = get_bool("tie_word_embeddings", false);
    if (has("head_dim")) {
        c.head_size = get_int("head_dim");
        require(c.head_size > 0, where, "config.json: head_dim ", c.head_size, " must be positive");
    }
    if (has("hidden_act"))
        require(j["hidden_act"] == "silu", where, "config.json: hidden_act ", j["hidden_act"].dump(),
                " is not supported (silu only)");

    // Biases: LLaMA and Mistral by attention_bias / mlp_bias, Qwen2 always on q, k, v.
    if (c.model_type == "qwen2") {
        c.biases = BiasScheme::qkv;
    } else {
        const bool attention = get_bool("attention_bias", false), mlp = get_bool("mlp_bias", false);
        c.biases = attention && mlp ? BiasScheme::attention_and_mlp
                   : attention      ? BiasScheme::attention
                   : mlp            ? BiasScheme::mlp
                                    : BiasScheme::none;
    }

    // Sliding windows: Mistral's sliding_window (absent: transformers'
    // MistralConfig default 4096; null: none); Qwen2's only
    // when use_sliding_window (then on the layers from max_window_layers on).
    // Either way the model refuses sequences longer than the window, so
    // whichever layers it applies to, what is computed equals HF's.
    if (c.model_type == "mistral") c.sliding_window = !j.contains("sliding_window") ? 4096
                                                      : has("sliding_window") ? get_int("sliding_window") : 0;
    if (c.model_type == "qwen2" && get_bool("use_sliding_window", false)) c.sliding_window = get_int("sliding_window");

    // rope_scaling: rope_type (older files: type) default, linear, llama3 or dynamic.
    if (has("rope_scaling")) {
        const nlohmann::json& r = j["rope_scaling"];
        require(r.is_object(), where, "config.json: rope_scaling ", r.dump(), " is not an object");
        const char* type_key = r.contains("rope_type") ? "rope_type" : "type";
        require(r.contains(type_key) && r[type_key].is_string(), where, "config.json: rope_scaling ", r.dump(),
                " has no string rope_type (or type)");
        const std::string type = r[type_key].get<std::string>();
        RopeScaling& s = c.rope_scaling;
        if (type == "default") s.type = RopeScaling::Type::none;
        else if (type == "linear") s.type = RopeScaling::Type::linear;
        else if (type == "llama3") s.type = RopeScaling::Type::llama3;
        else if (type == "dynamic") s.type = RopeScaling::Type::dynamic;
        else
            fail(where, "config.json: rope_scaling of type '", type, "' is not supported (default, linear, llama3 and "
                        "dynamic are; ", r.dump(), ")");
        if (s.type != RopeScaling::Type::none) {
            require(r.contains("factor"), where, "config.json: rope_scaling ", r.dump(), " has no factor");
            s.factor = get_number(r, "factor", 1.0, "rope_scaling ");
        }
        if (s.type == RopeScaling::Type::llama3) {  // transformers requires all four keys
            for (const char* key : {"low_freq_factor", "high_freq_factor", "original_max_position_embeddings"})
                require(r.contains(key) && r[key].is_number(), where, "config.json: rope_scaling of type llama3 needs a number ",
                        key, " (", r.dump(), ")");
            require(r["original_max_position_embeddings"].is_number_integer(), where,
                    "config.json: rope_scaling original_max_position_embeddings ", r["original_max_position_embeddings"].dump(),
                    " is not an integer");
            s.low_freq_factor = get_number(r, "low_freq_factor", 1.0, "rope_scaling ");
            s.high_freq_factor = get_number(r, "high_freq_factor", 4.0, "rope_scaling ");
            s.original_max_position = r["original_max_position_embeddings"].get<Index>();
        }
        // attention_factor (YaRN, longrope) and other scaled attentions change
        // the logits: refused rather than ignored.
        for (const char* key : {"attention_factor", "beta_fast", "beta_slow", "short_factor", "long_factor", "mscale"})
            require(!r.contains(key), where, "config.json: rope_scaling key '", key, "' is not supported");
    }
    // Keys of related architectures that would change the logits.
    for (const char* key : {"partial_rotary_factor", "qk_norm", "attn_logit_softcapping", "final_logit_softcapping",
                            "query_pre_attn_scalar", "attention_multiplier", "logits_scaling"})
        require(!has(key) || (std::string(key) == "partial_rotary_factor" && j[key] == 1.0), where, "config.json: '",
                key, "' = ", has(key) ? j[key].dump() : "", " is not supported");
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
        for (ProjectionKind kind : all_projections) {
            writer.add(prefix + projection_path(kind) + ".weight", b.download(block[kind].effective_weight()), dtype);
            if (block[kind].bias.rows() > 0)
                writer.add(prefix + projection_path(kind) + ".bias", b.download(block[kind].bias), dtype);
        }
    }
    writer.add("model.norm.weight", b.download(model.final_norm), dtype);
    if (!model.config.tied_embeddings) writer.add("lm_head.weight", b.download(model.lm_head), dtype);
    writer.write(dir / "model.safetensors");
    const std::string dtype_name = torch_dtype_name(dtype);
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
    /// shape {rows, cols} (cols = 1 for vectors), in Hugging Face's order
    /// (of a config check_all has held against the files: one of 2^40 layers
    /// would be listed).
    std::vector<std::pair<std::string, std::array<Index, 2>>> expected_tensors() const {
        const LlamaConfig& c = config_;
        std::vector<std::pair<std::string, std::array<Index, 2>>> out;
        out.push_back({"model.embed_tokens.weight", {c.vocab_size, c.dim}});
        for (Index l = 0; l < c.n_layers; ++l) {
            auto layer = expected_tensors_of_layer(l);
            out.insert(out.end(), std::make_move_iterator(layer.begin()), std::make_move_iterator(layer.end()));
        }
        out.push_back({"model.norm.weight", {c.dim, 1}});
        if (!c.tied_embeddings) out.push_back({"lm_head.weight", {c.vocab_size, c.dim}});
        return out;
    }

    /// The tensors of block `l` alone (norms, projections, biases), in Hugging Face's order.
    std::vector<std::pair<std::string, std::array<Index, 2>>> expected_tensors_of_layer(Index l) const {
        const LlamaConfig& c = config_;
        std::vector<std::pair<std::string, std::array<Index, 2>>> out;
        const std::string prefix = "model.layers." + std::to_string(l) + ".";
        out.push_back({prefix + "input_layernorm.weight", {c.dim, 1}});
        out.push_back({prefix + "post_attention_layernorm.weight", {c.dim, 1}});
        for (ProjectionKind kind : all_projections) {
            out.push_back({prefix + projection_path(kind) + ".weight", projection_shape(kind)});
            if (has_bias(c, kind)) out.push_back({prefix + projection_path(kind) + ".bias", {projection_shape(kind)[0], 1}});
        }
        return out;
    }

    /// {out, in} of a projection in this config.
    std::array<Index, 2> projection_shape(ProjectionKind kind) const { return loranull::projection_shape(config_, kind); }

    /// Checks every expected tensor (file present, tensor present, shape,
    /// floating-point dtype) from the headers alone, reading no data: a bad
    /// checkpoint is refused before any work starts. The config is first held
    /// against the files, so that one claiming 2^40 layers is refused here
    /// rather than listed; after check_all, every size of the config is that of
    /// a tensor in a file, so allocating the model cannot ask for more.
    void check_all() {
        // Each block has at least 9 tensors (2 norms, 7 projections): a bound
        // that only an absurd layer count trips, leaving the precise message
        // (the first missing tensor) to the loop below.
        const std::size_t held = tensors_held();
        require(static_cast<std::size_t>(config_.n_layers) <= held / 9, where_, "config.json: ", config_.n_layers,
                " layers of at least 9 tensors each, but the checkpoint's files hold ", held,
                " tensors in all (num_hidden_layers does not match the weights)");
        for (const auto& [name, shape] : expected_tensors()) checked_info(name, shape[0], shape[1]);
    }

    /// How many tensors the checkpoint's files hold (the index's entries when sharded).
    std::size_t tensors_held() {
        return sharded() ? file_of_.size() : reader("model.safetensors").tensors().size();
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
            if (has_bias(config_, kind))
                block[kind].bias = b.upload(read<T>(prefix + projection_path(kind) + ".bias", shape[0], 1));
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
    checkpoint.check_all();  // before the model's allocation: its sizes are then the files'
    LlamaModel<Bk, T> model(b, checkpoint.config());
    const LlamaConfig& c = model.config;
    model.embed = b.transpose(b.upload(checkpoint.read<T>("model.embed_tokens.weight", c.vocab_size, c.dim)));
    for (Index l = 0; l < c.n_layers; ++l) model.blocks[static_cast<std::size_t>(l)] = checkpoint.load_block<T>(b, l);
    model.final_norm = b.upload(checkpoint.read<T>("model.norm.weight", c.dim, 1));
    if (!c.tied_embeddings) model.lm_head = b.upload(checkpoint.read<T>("lm_head.weight", c.vocab_size, c.dim));
    return model;
}

}  // namespace loranull::io
