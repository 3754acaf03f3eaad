#pragma once
// PEFT adapter export (SPEC.md section 6): a folder that Hugging Face PEFT
// loads with PeftModel.from_pretrained(base_model, folder).
//
//   adapter_model.safetensors   base_model.model.<module>.lora_A.weight  [r, n]
//                               base_model.model.<module>.lora_B.weight  [m, r]
//                               (row-major, F32, F16 or BF16 as the caller asks)
//   adapter_config.json         peft_type "LORA", r, lora_alpha, target_modules, ...
//   residual_model.safetensors  residual mode only: <module>.weight [m, n]
//
// PEFT computes a LoRA layer as y = W x + (lora_alpha / r) B (A x). Residual
// initialisations (PiSSA, MiLoRA, CorDA, LoRA-Null, OLoRA) change the base
// weight to W_res = W - s B0 A0, so there are two ways to ship them; the user
// chooses (PeftMode):
//
//   residual  The adapter is the layer's current (A, B) with lora_alpha = s r,
//             so that PEFT's scaling lora_alpha / r equals our scale s. The base
//             weights must be *replaced* by W_res: they are written beside the
//             adapter (residual_model.safetensors, tensor names `<module>.weight`
//             as in the base model's state dict). Loading the adapter on the
//             unmodified base model is wrong for residual methods (it adds
//             s B0 A0 twice). Exact: W_res + s B A is the trained layer.
//
//   plain     The rank-2r conversion of LoraLinear::to_plain_lora: down = [A; A0]
//             (2r x n), up = s [B, -B0] (m x 2r), the scale folded into up and
//             lora_alpha = 2r (scaling 1), applied to the *unmodified* base
//             weight W: W + up down = W_res + s B A. Nothing beside the adapter.
//             The rank doubles; PeftExportOptions::plain_rank re-truncates each
//             module to a smaller rank (k = r restores the original rank), and
//             the report gives the error that costs (Eckart-Young: the
//             discarded singular values). Exporting freshly initialised factors
//             in plain mode gives an adapter whose product is zero (B = B0).
//
// Every module of one export shares r and lora_alpha when it can; modules whose
// rank or alpha differ from the first module's get entries in rank_pattern /
// alpha_pattern, keyed by their module path without its first component
// ("layers.0.mlp.down_proj"), which PEFT's regex match (old: `.*\.KEY$`, new:
// `(.*\.)?(KEY)$`) finds for that module only. A single-component path is used
// whole (only the newer PEFT matches it).
//
// target_modules is the list of last path components ("q_proj", "down_proj",
// ...), deduplicated: PEFT wraps *every* module whose name ends in one of them.
// A wrapped module that has no tensors in the file keeps PEFT's initialisation
// (B = 0, no effect), so exporting a subset of layers is safe.
//
// adapter_config.json uses only fields that PEFT's LoraConfig has had since
// 0.6 (older releases reject unknown fields): peft_type, task_type,
// base_model_name_or_path, revision, inference_mode, r, lora_alpha,
// lora_dropout, target_modules, bias, fan_in_fan_out, modules_to_save,
// init_lora_weights, layers_to_transform, layers_pattern, rank_pattern,
// alpha_pattern. What loranull knows beyond that (mode, methods, scales) goes
// into the safetensors `__metadata__`.
//
// Files are complete or absent: everything is computed and converted before
// the first byte is written, each file is written to a temporary name and
// renamed, and adapter_config.json is written last (a folder with a config is
// a finished export).

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "loranull/backend/backend.hpp"
#include "loranull/core/error.hpp"
#include "loranull/core/host_matrix.hpp"
#include "loranull/io/atomic_file.hpp"
#include "loranull/io/dtype.hpp"
#include "loranull/io/safetensors.hpp"
#include "loranull/lora/lora_linear.hpp"

namespace loranull::io {

namespace detail {

/// A JSON number that stays an integer when the value is one (PEFT types r
/// and lora_alpha as int; a float alpha works too).
inline nlohmann::json json_number(double value) {
    if (std::nearbyint(value) == value && std::abs(value) < 9.0e15) return static_cast<std::int64_t>(value);
    return value;
}

}  // namespace detail

/// The fields of adapter_config.json that vary; the rest are PEFT's defaults.
struct PeftAdapterConfig {
    Index r = 0;
    double lora_alpha = 0;
    std::vector<std::string> target_modules;  // last path components, sorted
    std::string base_model_name_or_path;
    std::string task_type = "CAUSAL_LM";
    nlohmann::json rank_pattern = nlohmann::json::object();   // module key -> r
    nlohmann::json alpha_pattern = nlohmann::json::object();  // module key -> lora_alpha
    nlohmann::json layers_to_transform = nullptr;  // [l, ...]: only these layers' modules are wrapped
    nlohmann::json layers_pattern = nullptr;       // the path component before the layer index ("layers")
};

/// adapter_config.json (the fields listed at the top of this file, in PEFT's
/// order): the one place it is written, for PeftExporter and the block-streamed
/// builder (pipeline/) alike.
inline nlohmann::json peft_adapter_config(const PeftAdapterConfig& c) {
    nlohmann::json config = nlohmann::json::object();
    config["peft_type"] = "LORA";
    config["task_type"] = c.task_type;
    config["base_model_name_or_path"] = c.base_model_name_or_path;
    config["revision"] = nullptr;
    config["inference_mode"] = true;
    config["r"] = c.r;
    config["lora_alpha"] = detail::json_number(c.lora_alpha);
    config["lora_dropout"] = 0.0;
    config["target_modules"] = c.target_modules;
    config["bias"] = "none";
    config["fan_in_fan_out"] = false;
    config["modules_to_save"] = nullptr;
    config["init_lora_weights"] = true;
    config["layers_to_transform"] = c.layers_to_transform;
    config["layers_pattern"] = c.layers_pattern;
    config["rank_pattern"] = c.rank_pattern;
    config["alpha_pattern"] = c.alpha_pattern;
    return config;
}

enum class PeftMode {
    residual,  // current (A, B), lora_alpha = s r, plus the residual base weights to load
    plain,     // rank-2r adapter for the unmodified base weight (optionally re-truncated)
};

inline std::string_view peft_mode_name(PeftMode mode) { return mode == PeftMode::residual ? "residual" : "plain"; }

struct PeftExportOptions {
    PeftMode mode = PeftMode::residual;
    /// Storage type of the adapter tensors (and of the residual weights): F32,
    /// F16 or BF16. Everything is computed in the layers' own precision and
    /// rounded here, last.
    Dtype dtype = Dtype::F32;
    /// Plain mode: 0 keeps the full rank 2r; k >= 1 re-truncates each module to
    /// rank min(k, 2r) (k = r gives back the original rank).
    Index plain_rank = 0;
    std::string base_model_name_or_path{};
    std::string task_type = "CAUSAL_LM";
    /// Residual mode: the file (inside the export folder) with `<module>.weight`.
    std::string residual_file = "residual_model.safetensors";
    /// Residual mode: false leaves the residual weights out, for an adapter of
    /// a model that already holds them (loranull-build's OUT/model, which
    /// loranull-finetune trains on).
    bool write_residual = true;
};

/// What was written for one module.
struct PeftModuleReport {
    std::string module;               // the path given, e.g. model.layers.0.self_attn.q_proj
    Index out_features = 0;           // m
    Index in_features = 0;            // n
    Index rank = 0;                   // rows of lora_A as written
    double lora_alpha = 0;            // scaling = lora_alpha / rank
    std::string method;               // the initialisation, when known
    // Plain mode with re-truncation (0 otherwise): ||delta - truncated|| in the
    // Frobenius and spectral norms, and the Frobenius one relative to ||delta||_F.
    double truncation_error_frobenius = 0;
    double truncation_error_spectral = 0;
    double relative_truncation_error = 0;
};

struct PeftExportReport {
    std::filesystem::path directory;
    PeftMode mode = PeftMode::residual;
    Index r = 0;                               // adapter_config.json "r"
    double lora_alpha = 0;                     // adapter_config.json "lora_alpha"
    std::vector<std::string> target_modules;
    std::vector<PeftModuleReport> modules;     // in the order added
    std::vector<std::filesystem::path> files;  // written, in order (config last)
};

/// Collects modules, then writes the adapter folder. Tensors are converted to
/// the storage dtype as they are added (bf16 residuals take 2 bytes a weight).
///
///     io::PeftExporter<CpuBackend> peft(cpu, {.mode = io::PeftMode::residual, .dtype = io::Dtype::BF16});
///     peft.add("model.layers.0.self_attn.q_proj", layer);   // LoraLinear, LoraFactors or PlainLora
///     io::PeftExportReport report = peft.write("out/adapter");
template <class Bk>
class PeftExporter {
public:
    explicit PeftExporter(Bk& backend, PeftExportOptions options = {}) : backend_(&backend), options_(std::move(options)) {
        const char* where = "io::PeftExporter";
        adapter_.set_metadata("format", "pt");
        adapter_.set_metadata("loranull.mode", std::string(peft_mode_name(options_.mode)));
        residual_.set_metadata("format", "pt");
        residual_.set_metadata("loranull.note", "residual weights W_res = W - s B0 A0: load them over the base "
                                                "model's weights, then the adapter of this folder");
        require(options_.dtype == Dtype::F32 || options_.dtype == Dtype::F16 || options_.dtype == Dtype::BF16, where,
                "dtype ", dtype_name(options_.dtype), " (PEFT adapters are stored as F32, F16 or BF16)");
        require(options_.plain_rank >= 0, where, "plain_rank = ", options_.plain_rank, " (0 keeps 2r, k >= 1 truncates)");
        require(options_.mode == PeftMode::plain || valid_file_name(options_.residual_file), where,
                "residual_file '", options_.residual_file, "' is not a plain file name");
    }

    const PeftExportOptions& options() const { return options_; }

    /// A key of adapter_model.safetensors' __metadata__ (loranull.method, ...).
    void set_metadata(const std::string& key, const std::string& value) { adapter_.set_metadata(key, value); }
    Index size() const { return static_cast<Index>(modules_.size()); }

    /// A trained (or fresh) layer: residual mode writes (A, B) and W_res; plain
    /// mode writes to_plain_lora() (re-truncated on request).
    template <Real T>
    void add(const std::string& module, const LoraLinear<Bk, T>& layer) {
        if (options_.mode == PeftMode::residual) {
            add_residual(module, layer.A, layer.B, layer.W_res, double(layer.scale), layer.method);
        } else {
            add_plain(module, layer.to_plain_lora(), layer.method);
        }
    }

    /// The same, first checking that `base_weight` is the weight the layer was
    /// initialised from (W = W_res + s B0 A0 to LoraLinear::to_plain_lora's
    /// tolerance): catches exporting against the wrong model, in either mode.
    template <Real T>
    void add(const std::string& module, const LoraLinear<Bk, T>& layer,
             const std::type_identity_t<matrix_t<Bk, T>>& base_weight) {
        if (options_.mode == PeftMode::residual) {
            (void)layer.to_plain_lora(base_weight);  // throws on a mismatch
            add(module, layer);
        } else {
            add_plain(module, layer.to_plain_lora(base_weight), layer.method);
        }
    }

    /// Factors straight from an initialiser (A = A0, B = B0).
    template <Real T>
    void add(const std::string& module, const LoraFactors<Bk, T>& factors) {
        if (options_.mode == PeftMode::residual) {
            add_residual(module, factors.A, factors.B, factors.W_res, double(factors.scale), factors.method);
        } else {
            add(module, LoraLinear<Bk, T>(*backend_, factors));
        }
    }

    /// A ready plain adapter (scale folded into up): plain mode only, since it
    /// belongs on the unmodified base weight.
    template <Real T>
    void add(const std::string& module, const PlainLora<Bk, T>& plain) {
        require(options_.mode == PeftMode::plain, "io::PeftExporter::add", "module '", module,
                "': a PlainLora adapts the unmodified base weight; export it in plain mode");
        add_plain(module, plain, "");
    }

    /// Writes adapter_model.safetensors, adapter_config.json and (residual
    /// mode) the residual weights into `directory` (created if missing).
    PeftExportReport write(const std::filesystem::path& directory) const {
        const char* where = "io::PeftExporter::write";
        require(!modules_.empty(), where, "no modules were added");
        std::error_code ec;
        std::filesystem::create_directories(directory, ec);
        require(!ec && std::filesystem::is_directory(directory), where, "cannot create the folder ",
                directory.string(), ec ? ": " + ec.message() : std::string());

        PeftExportReport report;
        report.directory = directory;
        report.mode = options_.mode;
        report.r = modules_.front().rank;
        report.lora_alpha = modules_.front().lora_alpha;
        report.target_modules = target_modules();
        report.modules = modules_;

        if (options_.mode == PeftMode::residual && options_.write_residual) {
            const auto path = directory / options_.residual_file;
            residual_.write(path);
            report.files.push_back(path);
        }
        const auto adapter_path = directory / "adapter_model.safetensors";
        adapter_.write(adapter_path);
        report.files.push_back(adapter_path);

        const auto config_path = directory / "adapter_config.json";
        write_text_atomically(config_path, config_json(report).dump(2) + "\n");
        report.files.push_back(config_path);
        return report;
    }

    /// The adapter_config.json that write() produces (for inspection and tests).
    nlohmann::json config_json() const {
        require(!modules_.empty(), "io::PeftExporter::config_json", "no modules were added");
        PeftExportReport report;
        report.r = modules_.front().rank;
        report.lora_alpha = modules_.front().lora_alpha;
        report.target_modules = target_modules();
        return config_json(report);
    }

private:
    nlohmann::json config_json(const PeftExportReport& report) const {
        nlohmann::json rank_pattern = nlohmann::json::object(), alpha_pattern = nlohmann::json::object();
        for (const auto& m : modules_) {
            if (m.rank != report.r) rank_pattern[pattern_key(m.module)] = m.rank;
            if (m.lora_alpha != report.lora_alpha) alpha_pattern[pattern_key(m.module)] = detail::json_number(m.lora_alpha);
        }
        return peft_adapter_config({report.r, report.lora_alpha, report.target_modules,
                                    options_.base_model_name_or_path, options_.task_type, rank_pattern, alpha_pattern});
    }

    /// The rank_pattern / alpha_pattern key of a module: its path without the
    /// first component ("layers.0.mlp.down_proj" for
    /// "model.layers.0.mlp.down_proj"). PEFT matches keys as regexes against
    /// the module's full name, older releases with `.*\.KEY$` (a dot must
    /// precede the key, so the full path never matches), newer ones with
    /// `(.*\.)?(KEY)$`: the shortened path matches in both (this module, and
    /// any other whose full name ends in the same path; an unescaped '.'
    /// matches itself too).
    static std::string pattern_key(const std::string& module) {
        const auto dot = module.find('.');
        return dot == std::string::npos ? module : module.substr(dot + 1);
    }

    std::vector<std::string> target_modules() const {
        std::vector<std::string> out;
        for (const auto& m : modules_) {
            const auto dot = m.module.rfind('.');
            std::string last = dot == std::string::npos ? m.module : m.module.substr(dot + 1);
            if (std::find(out.begin(), out.end(), last) == out.end()) out.push_back(std::move(last));
        }
        std::sort(out.begin(), out.end());
        return out;
    }

    std::string methods() const {
        std::ostringstream out;
        for (const auto& m : modules_) out << (out.tellp() > 0 ? "," : "") << m.module << "=" << m.method;
        return out.str();
    }

    static bool valid_file_name(const std::string& name) {
        return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
               name != "adapter_model.safetensors" && name != "adapter_config.json";
    }

    void check_module(const std::string& module) const {
        const char* where = "io::PeftExporter::add";
        // (One expression per line that does not start with the word "module":
        // nvcc reads such a line as a C++20 module declaration and warns.)
        const bool dotted = !module.empty() && module.front() != '.' && module.back() != '.';
        require(dotted && module.find("..") == std::string::npos, where, "module path '", module, "' (expected dotted names such as model.layers.0.self_attn.q_proj)");
        for (char c : module)
            require(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-', where,
                    "module path '", module, "' holds the character '", c, "'");
        for (const auto& m : modules_) require(m.module != module, where, "module '", module, "' added twice");
    }

    template <Real T>
    void add_residual(const std::string& module, const matrix_t<Bk, T>& a, const matrix_t<Bk, T>& b,
                      const matrix_t<Bk, T>& w_res, double scale, const std::string& method) {
        const char* where = "io::PeftExporter::add";
        check_module(module);
        const Index r = a.rows(), n = a.cols(), m = b.rows();
        require(r >= 1 && b.cols() == r && w_res.rows() == m && w_res.cols() == n, where, "module '", module,
                "': A is ", shape_string(a.rows(), a.cols()), ", B is ", shape_string(b.rows(), b.cols()),
                ", W_res is ", shape_string(w_res.rows(), w_res.cols()), " (need A r x n, B m x r, W_res m x n)");
        require(std::isfinite(scale) && scale != 0, where, "module '", module, "': scale ", scale);
        const HostMatrix<T> a_host = backend_->download(a), b_host = backend_->download(b);
        const bool finite = all_finite(a_host.data(), a_host.size()) && all_finite(b_host.data(), b_host.size());
        require(finite, where, "module '", module, "' holds NaN or Inf");
        if (options_.write_residual) {
            const HostMatrix<T> w_host = backend_->download(w_res);
            require(all_finite(w_host.data(), w_host.size()), where, "module '", module, "' holds NaN or Inf");
            residual_.add(module + ".weight", w_host, options_.dtype);
        }
        adapter_.add("base_model.model." + module + ".lora_A.weight", a_host, options_.dtype);
        adapter_.add("base_model.model." + module + ".lora_B.weight", b_host, options_.dtype);
        PeftModuleReport report;
        report.module = module;
        report.out_features = m;
        report.in_features = n;
        report.rank = r;
        report.lora_alpha = scale * double(r);
        report.method = method;
        modules_.push_back(std::move(report));
        adapter_.set_metadata("loranull.methods", methods());
    }

    template <Real T>
    void add_plain(const std::string& module, const PlainLora<Bk, T>& full, const std::string& method) {
        const char* where = "io::PeftExporter::add";
        check_module(module);
        require(full.rank() >= 1 && full.up.cols() == full.rank(), where, "module '", module, "': down is ",
                shape_string(full.down.rows(), full.down.cols()), ", up is ", shape_string(full.up.rows(), full.up.cols()));
        PeftModuleReport report;
        report.module = module;
        report.method = method;
        const bool truncate = options_.plain_rank >= 1 && options_.plain_rank < full.rank();
        PlainLora<Bk, T> kept;
        if (truncate) {
            kept = full.truncated(*backend_, options_.plain_rank);
            report.truncation_error_frobenius = kept.truncation_error_frobenius;
            report.truncation_error_spectral = kept.truncation_error_spectral;
            // ||delta||_F^2 = ||kept||_F^2 + tail^2, ||kept||_F^2 = trace((up^T up)(down down^T)).
            const auto gram_up = product(*backend_, kept.up, kept.up, Op::transpose, Op::none);
            const auto gram_down = product(*backend_, kept.down, kept.down, Op::none, Op::transpose);
            const double kept_squared = std::max(0.0, double(backend_->trace(product(*backend_, gram_up, gram_down))));
            const double total = std::sqrt(kept_squared + kept.truncation_error_frobenius * kept.truncation_error_frobenius);
            report.relative_truncation_error = total > 0 ? kept.truncation_error_frobenius / total : 0.0;
        }
        const PlainLora<Bk, T>& out = truncate ? kept : full;
        const HostMatrix<T> down = backend_->download(out.down), up = backend_->download(out.up);
        require(all_finite(down.data(), down.size()) && all_finite(up.data(), up.size()), where, "module '", module,
                "' holds NaN or Inf");
        adapter_.add("base_model.model." + module + ".lora_A.weight", down, options_.dtype);
        adapter_.add("base_model.model." + module + ".lora_B.weight", up, options_.dtype);
        report.out_features = up.rows();
        report.in_features = down.cols();
        report.rank = down.rows();
        report.lora_alpha = double(report.rank);  // scaling 1: the scale is folded into up
        modules_.push_back(std::move(report));
        adapter_.set_metadata("loranull.methods", methods());
    }

    Bk* backend_;  // not owned
    PeftExportOptions options_;
    SafetensorsWriter adapter_;
    SafetensorsWriter residual_;
    std::vector<PeftModuleReport> modules_;
};

/// One call for a homogeneous list: (module path, LoraLinear / LoraFactors /
/// PlainLora) pairs, written to `directory`.
template <class Bk, class Adapter>
PeftExportReport write_peft_adapter(Bk& backend, const std::filesystem::path& directory,
                                    const std::vector<std::pair<std::string, Adapter>>& modules,
                                    PeftExportOptions options = {}) {
    PeftExporter<Bk> exporter(backend, std::move(options));
    for (const auto& [module, adapter] : modules) exporter.add(module, adapter);
    return exporter.write(directory);
}

}  // namespace loranull::io
