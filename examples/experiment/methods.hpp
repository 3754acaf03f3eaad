#pragma once
// The methods compared, applied to a whole model, and the calibration that
// the data-driven ones need.
//
//   full          every weight, norm and the embedding train
//   lora          A Kaiming-uniform, B = 0 (PEFT's default)
//   pissa         top-r singular triplets of W
//   milora        bottom-r singular triplets of W
//   corda         CorDA knowledge-preserved mode: last r triplets of W C_f
//   lora-null-v1  W P through C's null space, A and B train
//   lora-null-v2  the same, A frozen (SPEC.md section 4's bound holds)
//
// Adapters go on all seven projections of every block (SPEC.md section 7);
// embeddings, norms and the LM head stay frozen for them.

#include <array>
#include <optional>
#include <string>
#include <vector>

#include <loranull/io/progress_bar.hpp>
#include <loranull/llama/calibration.hpp>
#include <loranull/llama/model.hpp>
#include <loranull/lora/methods.hpp>

#include "corpus.hpp"

namespace experiment {

enum class Method { full, lora, pissa, milora, corda, lora_null_v1, lora_null_v2 };

/// Each arm of the experiment: its name, and the library method (the row of
/// loranull::method_table) whose initialisation and trainable factors it
/// uses; full fine-tuning has none.
struct Arm {
    Method method;
    const char* name;
    const char* library_method;  // nullptr: full fine-tuning
};

inline constexpr Arm arms[] = {
    {Method::full, "full", nullptr},
    {Method::lora, "lora", "lora"},
    {Method::pissa, "pissa", "pissa"},
    {Method::milora, "milora", "milora"},
    {Method::corda, "corda", "corda-kpm"},
    {Method::lora_null_v1, "lora-null-v1", "lora-null-v1"},
    {Method::lora_null_v2, "lora-null-v2", "lora-null-v2"},
};

inline const Arm& arm_of(Method m) { return arms[static_cast<std::size_t>(m)]; }
inline const char* method_name(Method m) { return arm_of(m).name; }

inline Method parse_method(const std::string& name) {
    std::string known;
    for (const Arm& a : arms) {
        if (name == a.name) return a.method;
        known += std::string(known.empty() ? "" : ", ") + a.name;
    }
    loranull::fail("options", "unknown method '", name, "' (choose from ", known, ")");
}

/// The library's row for an adapter arm (nullptr for full fine-tuning).
inline const loranull::MethodInfo* library_method(Method m) {
    return arm_of(m).library_method ? &loranull::parse_method(arm_of(m).library_method) : nullptr;
}

/// Whether the method replaces the projections by W_res + s B A.
inline bool uses_adapters(Method m) { return library_method(m) != nullptr; }
inline bool needs_null_space(Method m) {
    return uses_adapters(m) && library_method(m)->method == loranull::Method::lora_null;
}

/// The calibration of the experiment: one covariance per block and distinct
/// linear input (loranull::ModelCalibration, SPEC.md section 1), plus the
/// first `probe_tokens` activations of each, kept to measure the SPEC.md
/// section 4 bound after training.
template <class Bk>
struct Calibration {
    using Activations = loranull::matrix_t<Bk, float>;
    std::optional<loranull::ModelCalibration<Bk, double>> covariances;
    std::vector<std::array<Activations, 4>> probe;  // [layer][input], n x probe tokens
    Index tokens = 0;
    Index samples = 0;
};

/// Runs `batches` (knowledge data) through the model and accumulates.
template <class Bk>
Calibration<Bk> calibrate(loranull::LlamaModel<Bk, float>& model, const std::vector<Batch>& batches, Index seq_len,
                          Index probe_tokens, bool quiet) {
    Bk& b = model.backend();
    Calibration<Bk> cal;
    cal.covariances.emplace(b, model.config, loranull::Normalisation::plain, "knowledge calibration");
    cal.probe.resize(static_cast<std::size_t>(model.config.n_layers));
    loranull::io::ProgressBar progress("calibration", static_cast<long>(batches.size()), 0, "batches", quiet);
    for (std::size_t i = 0; i < batches.size(); ++i) {
        model.forward(batches[i].tokens, seq_len, [&](Index layer, loranull::LinearInput input, const auto& x) {
            cal.covariances->add(layer, input, x, seq_len);
            auto& probe = cal.probe[static_cast<std::size_t>(layer)][static_cast<std::size_t>(input)];
            const Index have = probe.cols(), take = std::min<Index>(probe_tokens - have, x.cols());
            if (take > 0) {
                auto more = b.block(x, 0, 0, x.rows(), take);
                if (have == 0) {
                    probe = std::move(more);
                } else {
                    auto joined = loranull::zeros<float>(b, x.rows(), have + take);
                    b.set_block(joined, 0, 0, probe);
                    b.set_block(joined, 0, have, more);
                    probe = std::move(joined);
                }
            }
        });
        cal.tokens += static_cast<Index>(batches[i].tokens.size());
        cal.samples += static_cast<Index>(batches[i].tokens.size()) / seq_len;
        progress.advance();
    }
    return cal;
}

/// Null spaces per block and input, computed once and shared by q/k/v and
/// gate/up (and by v1 and v2).
template <class Bk>
using NullSpaces = std::vector<std::array<loranull::NullSpace<Bk, double>, 4>>;

template <class Bk>
NullSpaces<Bk> null_spaces(const Calibration<Bk>& cal, Index rank) {
    NullSpaces<Bk> out;
    for (Index l = 0; l < cal.covariances->layers(); ++l) out.push_back(cal.covariances->block(l).null_spaces(rank));
    return out;
}

/// Checks up front that `rank` fits every projection, so that a bad --rank
/// fails with one message before any work.
inline void check_rank(const loranull::LlamaConfig& c, Index rank) {
    const Index smallest = loranull::max_rank(c);
    loranull::require(rank >= 1 && rank <= smallest, "options", "--rank ", rank,
                      " does not fit the model: its smallest projection is ", smallest, " wide (dim ", c.dim, ", kv ",
                      c.n_kv_heads * c.head_dim(), ", hidden ", c.hidden_dim, "), so 1 <= rank <= ", smallest);
}

/// Turns `model` (the pre-trained one, copied) into what `method` trains.
template <class Bk>
void apply_method(loranull::LlamaModel<Bk, float>& model, Method method, const Calibration<Bk>* cal,
                  const NullSpaces<Bk>* spaces, Index rank, std::uint64_t seed) {
    using loranull::ProjectionKind;
    Bk& b = model.backend();
    const loranull::MethodInfo* info = library_method(method);
    model.set_full_finetune(info == nullptr);
    if (!info) return;
    for (std::size_t l = 0; l < model.blocks.size(); ++l) {
        const auto& block = cal->covariances->block(static_cast<Index>(l));
        for (ProjectionKind p : loranull::all_projections) {
            auto& proj = model.blocks[l][p];
            // One seed per projection for LoRA's random A.
            const loranull::LoraConfig config(rank, {}, seed * 1000 + l * 7 + static_cast<std::uint64_t>(p));
            const auto data = block.data_for(p, spaces && !spaces->empty() ? &(*spaces)[l] : nullptr);
            proj.attach(b, loranull::initialise(b, proj.weight, info->method, data, config), info->trainable);
        }
    }
}

}  // namespace experiment
