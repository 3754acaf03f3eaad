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

#include <loranull/linalg/covariance.hpp>
#include <loranull/linalg/null_space.hpp>
#include <loranull/lora/initialisers.hpp>
#include <loranull/llama/model.hpp>

#include "corpus.hpp"
#include "progress.hpp"

namespace experiment {

enum class Method { full, lora, pissa, milora, corda, lora_null_v1, lora_null_v2 };

inline constexpr std::array<Method, 7> all_methods = {Method::full,  Method::lora,         Method::pissa,
                                                      Method::milora, Method::corda, Method::lora_null_v1,
                                                      Method::lora_null_v2};

inline const char* method_name(Method m) {
    switch (m) {
        case Method::full: return "full";
        case Method::lora: return "lora";
        case Method::pissa: return "pissa";
        case Method::milora: return "milora";
        case Method::corda: return "corda";
        case Method::lora_null_v1: return "lora-null-v1";
        case Method::lora_null_v2: return "lora-null-v2";
    }
    return "?";
}

inline Method parse_method(const std::string& name) {
    std::string known;
    for (Method m : all_methods) {
        if (name == method_name(m)) return m;
        known += std::string(known.empty() ? "" : ", ") + method_name(m);
    }
    loranull::fail("options", "unknown method '", name, "' (choose from ", known, ")");
}

/// Whether the method replaces the projections by W_res + s B A.
inline bool uses_adapters(Method m) { return m != Method::full; }
inline bool needs_null_space(Method m) { return m == Method::lora_null_v1 || m == Method::lora_null_v2; }

/// One covariance per block and distinct linear input (SPEC.md section 1),
/// plus the first `probe_tokens` activations of each, kept to measure the
/// SPEC.md section 4 bound after training.
template <class Bk>
struct Calibration {
    using Activations = loranull::matrix_t<Bk, float>;
    std::vector<std::array<std::optional<loranull::Covariance<Bk, double>>, 4>> covariance;  // [layer][input]
    std::vector<std::array<Activations, 4>> probe;                                      // [layer][input], n x probe tokens
    Index tokens = 0;
    Index samples = 0;
};

/// Runs `batches` (knowledge data) through the model and accumulates.
template <class Bk>
Calibration<Bk> calibrate(loranull::LlamaModel<Bk, float>& model, const std::vector<Batch>& batches, Index seq_len,
                          Index probe_tokens, bool quiet) {
    Bk& b = model.backend();
    Calibration<Bk> cal;
    const std::size_t layers = static_cast<std::size_t>(model.config.n_layers);
    cal.covariance.resize(layers);
    cal.probe.resize(layers);
    Progress progress("calibration", static_cast<long>(batches.size()), quiet);
    for (std::size_t i = 0; i < batches.size(); ++i) {
        model.forward(batches[i].tokens, seq_len, [&](Index layer, loranull::LinearInput input, const auto& x) {
            auto& slot = cal.covariance[static_cast<std::size_t>(layer)][static_cast<std::size_t>(input)];
            if (!slot) slot.emplace(b, x.rows(), loranull::Normalisation::plain, "knowledge calibration");
            slot->add_samples(x, seq_len);
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
        progress.update(static_cast<long>(i + 1));
    }
    return cal;
}

/// Null spaces per block and input, computed once and shared by q/k/v and
/// gate/up (and by v1 and v2).
template <class Bk>
using NullSpaces = std::vector<std::array<std::optional<loranull::NullSpace<Bk, double>>, 4>>;

template <class Bk>
NullSpaces<Bk> null_spaces(const Calibration<Bk>& cal, Index rank) {
    NullSpaces<Bk> out(cal.covariance.size());
    for (std::size_t l = 0; l < cal.covariance.size(); ++l)
        for (std::size_t i = 0; i < 4; ++i) out[l][i].emplace(loranull::null_space(*cal.covariance[l][i], rank));
    return out;
}

/// Checks up front that `rank` fits every projection, so that a bad --rank
/// fails with one message before any work.
inline void check_rank(const loranull::LlamaConfig& c, Index rank) {
    const Index kv = c.n_kv_heads * c.head_dim();
    const Index smallest = std::min({c.dim, kv, c.hidden_dim});
    loranull::require(rank >= 1 && rank <= smallest, "options", "--rank ", rank,
                      " does not fit the model: its smallest projection is ", smallest,
                      " wide (dim ", c.dim, ", kv ", kv, ", hidden ", c.hidden_dim, "), so 1 <= rank <= ", smallest);
}

/// Turns `model` (the pre-trained one, copied) into what `method` trains.
template <class Bk>
void apply_method(loranull::LlamaModel<Bk, float>& model, Method method, const Calibration<Bk>* cal,
                  const NullSpaces<Bk>* spaces, Index rank, std::uint64_t seed) {
    using loranull::ProjectionKind;
    Bk& b = model.backend();
    if (!uses_adapters(method)) {
        model.set_full_finetune(true);
        return;
    }
    model.set_full_finetune(false);
    for (std::size_t l = 0; l < model.blocks.size(); ++l) {
        for (ProjectionKind p : loranull::all_projections) {
            const std::size_t input = static_cast<std::size_t>(loranull::input_of(p));
            auto& proj = model.blocks[l][p];
            const auto& w = proj.weight;
            // One seed per projection for LoRA's random A.
            const loranull::LoraConfig config(rank, {}, seed * 1000 + l * 7 + static_cast<std::uint64_t>(p));
            loranull::LoraFactors<Bk, float> factors;
            switch (method) {
                case Method::lora: factors = loranull::lora(b, w, config); break;
                case Method::pissa: factors = loranull::pissa(b, w, config); break;
                case Method::milora: factors = loranull::milora(b, w, config); break;
                case Method::corda: factors = loranull::corda_kpm(b, w, *cal->covariance[l][input], config); break;
                case Method::lora_null_v1:
                case Method::lora_null_v2: factors = loranull::lora_null(b, w, *(*spaces)[l][input], config); break;
                case Method::full: break;
            }
            proj.attach(b, std::move(factors),
                        method == Method::lora_null_v2 ? loranull::Trainable::B_only : loranull::Trainable::both);
        }
    }
}

}  // namespace experiment
