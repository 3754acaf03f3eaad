#pragma once
// Reading a PEFT LoRA adapter folder and merging it into a LLaMA model: what
// PeftModel.from_pretrained(base, folder).merge_and_unload() computes,
//
//   W <- W + scaling B A,   scaling = lora_alpha / r   (use_rslora: lora_alpha / sqrt(r))
//
// for every module with tensors base_model.model.<module>.lora_A.weight [r, n]
// and .lora_B.weight [m, r] in adapter_model.safetensors, lora_alpha and r
// per module from adapter_config.json: lora_alpha, or the alpha_pattern value
// of the first key (in the file's order) that matches the module's path as
// PEFT matches it, the regex `(.*\.)?(KEY)$` over the whole path; r is the
// module's lora_A rows (which rank_pattern set when the adapter was made). The
// sums run in double and are cast to the model's type once.
//
// What would change the computation in ways a merge does not express is
// refused by name: DoRA (use_dora), adapter biases (bias != "none"),
// modules_to_save, fan_in_fan_out, a peft_type other than LORA, and lora
// tensors for modules the model does not have.

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "loranull/core/error.hpp"
#include "loranull/core/host_matrix.hpp"
#include "loranull/io/safetensors.hpp"
#include "loranull/llama/layout.hpp"
#include "loranull/llama/model.hpp"

namespace loranull::io {

struct PeftModule {
    std::string path;      // "model.layers.0.self_attn.q_proj"
    HostMatrix<double> A;  // r x n
    HostMatrix<double> B;  // m x r
    double scaling = 1;    // lora_alpha / r (or / sqrt(r))
};

struct PeftAdapter {
    std::filesystem::path dir;
    std::vector<PeftModule> modules;
};

namespace detail {

/// The value of the first pattern key (file order) whose regex
/// `(.*\.)?(KEY)$` matches the whole of `path` (PEFT's get_pattern_key), or
/// `fallback`.
inline double pattern_value(const nlohmann::ordered_json& patterns, const std::string& path, double fallback,
                            const std::string& where, const char* field = "alpha_pattern") {
    if (!patterns.is_object()) return fallback;
    for (const auto& [key, value] : patterns.items()) {
        std::regex pattern;
        try {
            pattern = std::regex("(.*\\.)?(" + key + ")$");
        } catch (const std::regex_error& e) {
            fail(where, "adapter_config.json: ", field, " key '", key, "' is not a valid regex (", e.what(), ")");
        }
        if (!std::regex_match(path, pattern)) continue;
        require(value.is_number(), where, "adapter_config.json: ", field, " '", key, "' is ", value.dump(),
                ", expected a number");
        return value.get<double>();
    }
    return fallback;
}

/// Whether PEFT wraps module `path` for adapter_config `c`: target_modules a
/// list (the path ends in ".NAME", or is NAME) or a regex (matching the whole
/// path); absent or null: any module.
inline bool targets_module(const nlohmann::ordered_json& c, const std::string& path, const std::string& where) {
    if (!c.contains("target_modules") || c["target_modules"].is_null()) return true;
    const auto& targets = c["target_modules"];
    if (targets.is_string()) {
        try {
            return std::regex_match(path, std::regex(targets.get<std::string>()));
        } catch (const std::regex_error& e) {
            fail(where, "adapter_config.json: target_modules '", targets.get<std::string>(), "' is not a valid regex (",
                 e.what(), ")");
        }
    }
    require(targets.is_array(), where, "adapter_config.json: target_modules is ", targets.dump(), ", expected a list or a string");
    for (const auto& t : targets) {
        require(t.is_string(), where, "adapter_config.json: target_modules holds ", t.dump(), ", expected names");
        const std::string name = t.get<std::string>();
        if (path == name || (path.size() > name.size() && path.compare(path.size() - name.size(), name.size(), name) == 0 &&
                             path[path.size() - name.size() - 1] == '.'))
            return true;
    }
    return false;
}

}  // namespace detail

/// How closely read_peft_adapter holds the tensors to adapter_config.json.
enum class PeftCheck {
    tensors,        // each module's rank is its lora_A rows (a merge needs no more)
    as_peft_loads,  // and it must be the config's r (or rank_pattern entry), the module in
                    // target_modules: what PeftModel.from_pretrained needs to load the file
};

/// adapter_config.json and adapter_model.safetensors of `dir`, checked.
inline PeftAdapter read_peft_adapter(const std::filesystem::path& dir, PeftCheck check = PeftCheck::tensors) {
    const std::string where = "--adapter " + dir.string();
    require(std::filesystem::is_directory(dir), where, "is not a folder");
    const std::filesystem::path config_path = dir / "adapter_config.json";
    require(std::filesystem::exists(config_path), where, "adapter_config.json is missing");
    nlohmann::ordered_json c;  // file order: alpha_pattern's first matching key wins
    try {
        std::ifstream in(config_path);
        c = nlohmann::ordered_json::parse(in);
    } catch (const nlohmann::json::exception& e) {
        fail(where, "adapter_config.json is not valid JSON (", e.what(), ")");
    }
    require(c.is_object() && c.contains("peft_type") && c["peft_type"] == "LORA", where, "adapter_config.json: peft_type is ",
            c.contains("peft_type") ? c["peft_type"].dump() : "missing", ", expected \"LORA\"");
    require(c.contains("r") && c["r"].is_number() && c.contains("lora_alpha") && c["lora_alpha"].is_number(), where,
            "adapter_config.json needs numbers r and lora_alpha");
    for (const char* key : {"use_dora", "fan_in_fan_out"})
        require(!c.contains(key) || c[key].is_null() || c[key] == false, where, "adapter_config.json: ", key,
                " = true is not supported");
    require(!c.contains("bias") || c["bias"] == "none", where, "adapter_config.json: bias ",
            c.contains("bias") ? c["bias"].dump() : "", " is not supported (adapters without biases only)");
    require(!c.contains("modules_to_save") || c["modules_to_save"].is_null() || c["modules_to_save"].empty(), where,
            "adapter_config.json: modules_to_save ", c.contains("modules_to_save") ? c["modules_to_save"].dump() : "",
            " is not supported");
    const bool rslora = c.contains("use_rslora") && c["use_rslora"] == true;
    const double alpha = c["lora_alpha"].get<double>();
    const nlohmann::ordered_json rank_pattern = c.contains("rank_pattern") ? c["rank_pattern"] : nlohmann::ordered_json::object();
    const nlohmann::ordered_json alpha_pattern = c.contains("alpha_pattern") ? c["alpha_pattern"] : nlohmann::ordered_json::object();

    const std::filesystem::path weights = dir / "adapter_model.safetensors";
    require(std::filesystem::exists(weights), where, "adapter_model.safetensors is missing");
    const SafetensorsReader file(weights);
    const std::string prefix = "base_model.model.", a_suffix = ".lora_A.weight", b_suffix = ".lora_B.weight";
    PeftAdapter adapter;
    adapter.dir = dir;
    for (const auto& [name, info] : file.tensors()) {
        const bool is_a = name.size() > a_suffix.size() && name.compare(name.size() - a_suffix.size(), a_suffix.size(), a_suffix) == 0;
        const bool is_b = name.size() > b_suffix.size() && name.compare(name.size() - b_suffix.size(), b_suffix.size(), b_suffix) == 0;
        require(is_a || is_b, where, "adapter_model.safetensors: tensor '", name,
                "' is neither lora_A nor lora_B (not a plain LoRA adapter)");
        if (!is_a) {
            const std::string a_name = name.substr(0, name.size() - b_suffix.size()) + a_suffix;
            require(file.contains(a_name), where, "tensor '", name, "' has no '", a_name, "'");
            continue;
        }
        require(name.rfind(prefix, 0) == 0, where, "tensor '", name, "' does not start with ", prefix);
        PeftModule m;
        m.path = name.substr(prefix.size(), name.size() - prefix.size() - a_suffix.size());
        const std::string b_name = prefix + m.path + b_suffix;
        require(file.contains(b_name), where, "tensor '", name, "' has no '", b_name, "'");
        m.A = file.read_matrix<double>(name);
        m.B = file.read_matrix<double>(b_name);
        require(m.A.rows() >= 1 && m.B.cols() == m.A.rows(), where, "module ", m.path, ": lora_A is ",
                shape_string(m.A.rows(), m.A.cols()), ", lora_B is ", shape_string(m.B.rows(), m.B.cols()),
                " (need [r, n] and [m, r])");
        require(all_finite(m.A.data(), m.A.size()) && all_finite(m.B.data(), m.B.size()), where, "module ", m.path,
                " holds NaN or Inf");
        if (check == PeftCheck::as_peft_loads) {
            // What PEFT would build for this module must hold these tensors: a
            // module PEFT does not wrap, or wraps at another rank, fails to load there.
            const double expected_rank =
                detail::pattern_value(rank_pattern, m.path, c["r"].get<double>(), where, "rank_pattern");
            require(double(m.A.rows()) == expected_rank, where, "module ", m.path, ": lora_A has rank ", m.A.rows(),
                    ", adapter_config.json gives it r = ", expected_rank, " (r, or its rank_pattern entry)");
            require(detail::targets_module(c, m.path, where), where, "module ", m.path,
                    " has tensors but is not among adapter_config.json's target_modules ",
                    c.contains("target_modules") ? c["target_modules"].dump() : "(missing)");
        }
        const double r = double(m.A.rows());
        const double module_alpha = detail::pattern_value(alpha_pattern, m.path, alpha, where);
        m.scaling = rslora ? module_alpha / std::sqrt(r) : module_alpha / r;
        require(std::isfinite(m.scaling), where, "module ", m.path, ": the scaling lora_alpha / r = ", module_alpha,
                " / ", r, " is not finite");
        adapter.modules.push_back(std::move(m));
    }
    require(!adapter.modules.empty(), where, "adapter_model.safetensors holds no lora_A/lora_B pair");
    return adapter;
}

namespace detail {

/// The projection of `model` that PEFT module `m` adapts, checked to be free
/// and of B A's shape.
template <class Bk, Real T>
Projection<Bk, T>& adapted_projection(LlamaModel<Bk, T>& model, const PeftModule& m, const std::string& where) {
    Projection<Bk, T>* target = nullptr;
    for (Index l = 0; l < model.config.n_layers && !target; ++l)
        for (ProjectionKind kind : all_projections)
            if (m.path == "model.layers." + std::to_string(l) + "." + projection_path(kind))
                target = &model.blocks[static_cast<std::size_t>(l)][kind];
    require(target != nullptr, where, "module ", m.path, " is not a projection of this model (q/k/v/o/gate/up/down of ",
            model.config.n_layers, " layers)");
    require(!target->lora, where, "module ", m.path, " already holds an adapter");
    require(m.B.rows() == target->out_features() && m.A.cols() == target->in_features(), where, "module ", m.path,
            ": B A is ", shape_string(m.B.rows(), m.A.cols()), ", the weight is ",
            shape_string(target->out_features(), target->in_features()), " (an adapter of another model?)");
    return *target;
}

}  // namespace detail

/// Puts every module of `adapter` on `model` as a trainable LoraLinear:
/// W_res = the model's weight, (A, B) and the scale as PEFT reads them, so the
/// model computes what PeftModel.from_pretrained(model, adapter) computes; the
/// factors as read become A0, B0 (the knowledge report's reference).
template <class Bk, Real T>
void attach_peft_adapter(LlamaModel<Bk, T>& model, const PeftAdapter& adapter, Trainable trainable,
                         const std::string& method = {}) {
    Bk& b = model.backend();
    const std::string where = "--adapter " + adapter.dir.string();
    for (const PeftModule& m : adapter.modules) {
        Projection<Bk, T>& target = detail::adapted_projection(model, m, where);
        LoraFactors<Bk, T> f;
        f.A = b.template convert<T>(b.upload(m.A));
        f.B = b.template convert<T>(b.upload(m.B));
        f.W_res = target.weight;
        f.scale = static_cast<T>(m.scaling);
        f.method = method;
        target.attach(b, std::move(f), trainable);
    }
}

/// W += scaling B A for every module of `adapter` (in double, cast once).
template <class Bk, Real T>
void merge_peft_adapter(LlamaModel<Bk, T>& model, const PeftAdapter& adapter) {
    Bk& b = model.backend();
    const std::string where = "--adapter " + adapter.dir.string();
    for (const PeftModule& m : adapter.modules) {
        Projection<Bk, T>* target = &detail::adapted_projection(model, m, where);
        auto w = b.template convert<double>(target->weight);  // m x n, on the backend
        b.gemm(Op::none, Op::none, m.scaling, b.upload(m.B), b.upload(m.A), 1.0, w);
        auto merged = b.template convert<T>(w);
        require(b.all_finite(merged), where, "module ", m.path, ": W + ", m.scaling,
                " B A overflows (NaN or Inf in the merged weight: lora_alpha / r too large for the factors)");
        target->weight = std::move(merged);
    }
}

}  // namespace loranull::io
