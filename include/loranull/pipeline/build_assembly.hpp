#pragma once
// The outputs of a build, assembled from its block files one tensor at a time
// (io::write_safetensors), so that memory never holds more than one tensor:
//
//   OUT/model    the input checkpoint with every adapted projection's weight
//                replaced by its residual: same files (shards), same tensor
//                order, same index, config.json and tokenizer files copied
//                (config.json last: a model folder with a config is complete)
//   OUT/adapter  adapter_model.safetensors + adapter_config.json (io/peft.hpp):
//                residual export: the factors as initialised, for OUT/model;
//                plain export: the rank-2r conversion for the unmodified base
//                (plain_lora in lora/lora_linear.hpp; its product is zero at
//                initialisation, SPEC.md section 6)

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "loranull/io/atomic_file.hpp"
#include "loranull/io/hf_checkpoint.hpp"
#include "loranull/io/peft.hpp"
#include "loranull/io/safetensors.hpp"
#include "loranull/llama/calibration.hpp"
#include "loranull/lora/lora_linear.hpp"
#include "loranull/pipeline/build_folder.hpp"
#include "loranull/pipeline/build_options.hpp"

namespace loranull::pipeline {

class BuildAssembly {
public:
    BuildAssembly(const BuildOptions& options, const std::vector<Index>& layers, const BuildFolder& folder)
        : o_(options), layers_(layers), folder_(folder) {}

    /// OUT/model: the input checkpoint with the adapted weights replaced.
    void write_residual_model(io::HfCheckpointReader& checkpoint) {
        namespace fs = std::filesystem;
        const fs::path dir = folder_.path() / "model";
        fs::create_directories(dir);
        std::map<std::string, Index> adapted;  // weight name -> layer
        for (Index l : layers_)
            for (ProjectionKind kind : all_projections) adapted[module_path(l, kind) + ".weight"] = l;
        std::uint64_t total_size = 0;
        for (const std::string& file : checkpoint.files()) {
            const io::SafetensorsReader& in = checkpoint.reader(file);
            std::vector<const io::TensorInfo*> order;  // the input's order of data
            for (const auto& [name, info] : in.tensors()) order.push_back(&info);
            std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
            std::vector<io::StreamedTensor> tensors;
            for (const io::TensorInfo* info : order) {
                const std::string name = info->name;
                if (auto it = adapted.find(name); it != adapted.end()) {
                    const io::SafetensorsReader* b = &block(it->second);
                    const io::TensorInfo& src = b->info(name);
                    tensors.push_back({name, src.dtype, src.shape, [b, name](std::ostream& out) { b->copy_tensor(name, out); }});
                } else if (!o_.dtype || !io::is_floating(info->dtype) || info->dtype == *o_.dtype) {
                    const io::SafetensorsReader* reader = &in;
                    tensors.push_back({name, info->dtype, info->shape,
                                       [reader, name](std::ostream& out) { reader->copy_tensor(name, out); }});
                } else {
                    const io::SafetensorsReader* reader = &in;
                    const io::Dtype dtype = *o_.dtype;
                    tensors.push_back({name, dtype, info->shape, [reader, name, dtype](std::ostream& out) {
                                           io::encode_row_major(reader->read_matrix<double>(name), dtype, out);
                                       }});
                }
                total_size += tensors.back().bytes();
            }
            std::map<std::string, std::string> metadata = in.metadata();
            metadata["format"] = "pt";
            metadata["loranull.note"] = "residual model of loranull-build (" + o_.method + ", rank " +
                                        std::to_string(o_.rank) + "): load with the adapter in ../adapter";
            io::write_safetensors(dir / file, metadata, tensors);
        }
        if (checkpoint.sharded()) {
            nlohmann::json index = checkpoint.index_json();
            index["metadata"]["total_size"] = total_size;
            io::write_text_atomically(dir / "model.safetensors.index.json", index.dump(2) + "\n");
        }
        nlohmann::json config = checkpoint.config_json();
        if (o_.dtype)
            config["torch_dtype"] = io::torch_dtype_name(*o_.dtype);
        for (const char* extra : {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                  "generation_config.json", "added_tokens.json"}) {
            std::error_code ec;
            if (fs::is_regular_file(checkpoint.dir() / extra))
                fs::copy_file(checkpoint.dir() / extra, dir / extra, fs::copy_options::overwrite_existing, ec);
        }
        io::write_text_atomically(dir / "config.json", config.dump(2) + "\n");
    }

    /// OUT/adapter: adapter_model.safetensors + adapter_config.json. The plain
    /// conversion runs on backend b, one module at a time. `calibration` (where
    /// the calibration tokens came from) goes into the safetensors metadata.
    template <class Bk>
    void write_adapter(Bk& b, const nlohmann::json& calibration, Index total_layers) {
        const std::filesystem::path dir = folder_.path() / "adapter";
        std::filesystem::create_directories(dir);
        const double s = o_.scale();
        std::vector<io::StreamedTensor> tensors;
        for (Index l : layers_) {
            const io::SafetensorsReader* blk = &block(l);
            for (ProjectionKind kind : all_projections) {
                const std::string module = module_path(l, kind), prefix = "base_model.model." + module;
                const std::string a_name = module + ".lora_A.weight", b_name = module + ".lora_B.weight";
                const io::TensorInfo& a = blk->info(a_name);
                const io::TensorInfo& up = blk->info(b_name);
                if (!o_.export_plain) {
                    tensors.push_back({prefix + ".lora_A.weight", a.dtype, a.shape,
                                       [blk, a_name](std::ostream& out) { blk->copy_tensor(a_name, out); }});
                    tensors.push_back({prefix + ".lora_B.weight", up.dtype, up.shape,
                                       [blk, b_name](std::ostream& out) { blk->copy_tensor(b_name, out); }});
                    continue;
                }
                // At initialisation A = A0 and B = B0: down = [A0; A0], up = s [B0, -B0].
                // lora_A is written first: its callback converts the module and
                // keeps `up` (m x 2r) for lora_B's, which follows at once.
                auto up_of_module = std::make_shared<HostMatrix<double>>();
                tensors.push_back({prefix + ".lora_A.weight", a.dtype, {2 * a.shape[0], a.shape[1]},
                                   [&b, blk, a_name, b_name, s, up_of_module, dtype = a.dtype](std::ostream& out) {
                                       const auto a0 = b.upload(blk->read_matrix<double>(a_name));
                                       const auto b0 = b.upload(blk->read_matrix<double>(b_name));
                                       const auto converted = plain_lora(b, a0, b0, a0, b0, s);
                                       *up_of_module = b.download(converted.up);
                                       io::encode_row_major(b.download(converted.down), dtype, out);
                                   }});
                tensors.push_back({prefix + ".lora_B.weight", up.dtype, {up.shape[0], 2 * up.shape[1]},
                                   [up_of_module, dtype = up.dtype](std::ostream& out) {
                                       io::encode_row_major(*up_of_module, dtype, out);
                                       *up_of_module = HostMatrix<double>();
                                   }});
            }
        }
        std::map<std::string, std::string> metadata{{"format", "pt"},
                                                    {"loranull.mode", o_.export_plain ? "plain" : "residual"},
                                                    {"loranull.method", o_.method}};
        if (!calibration.is_null()) metadata["loranull.calibration"] = calibration.dump();
        io::write_safetensors(dir / "adapter_model.safetensors", metadata, tensors);
        std::vector<std::string> targets;
        for (ProjectionKind kind : all_projections) targets.push_back(projection_name(kind));
        std::sort(targets.begin(), targets.end());
        io::PeftAdapterConfig config;
        config.r = o_.export_plain ? 2 * o_.rank : o_.rank;
        config.lora_alpha = o_.export_plain ? double(config.r) : o_.lora_alpha();  // plain: scale folded into up
        config.target_modules = targets;
        config.base_model_name_or_path = o_.export_plain ? o_.model : "../model";
        if (static_cast<Index>(layers_.size()) < total_layers) {
            // target_modules names every layer's q_proj, ...: restrict PEFT to the
            // adapted blocks, or it wraps the others with fresh (trainable) LoRA.
            config.layers_to_transform = layers_;
            config.layers_pattern = "layers";
        }
        io::write_text_atomically(dir / "adapter_config.json", io::peft_adapter_config(config).dump(2) + "\n");
    }

private:
    static std::string module_path(Index layer, ProjectionKind kind) {
        return "model.layers." + std::to_string(layer) + "." + projection_path(kind);
    }

    const io::SafetensorsReader& block(Index layer) {
        auto& reader = blocks_[layer];
        if (!reader) reader = std::make_unique<io::SafetensorsReader>(folder_.block_path(layer));
        return *reader;
    }

    const BuildOptions& o_;
    const std::vector<Index>& layers_;
    const BuildFolder& folder_;
    std::map<Index, std::unique_ptr<io::SafetensorsReader>> blocks_;  // opened once, headers only
};

}  // namespace loranull::pipeline
