#pragma once
// Calibration of a LLaMA block (SPEC.md section 1): the four distinct inputs of
// its seven projections (llama/layout.hpp), one covariance each.
//
// Layers that share an input share its covariance: 4 accumulators a block, not
// 7. BlockCalibration holds them and is fed by the model's forward hook
// (LlamaModel::Hook: (layer, input, X) with X = size x tokens); the experiment
// calibrates a whole model with ModelCalibration, the block-streamed builder
// (pipeline/) one BlockCalibration at a time. Both then hand each projection
// its MethodData (lora/methods.hpp), with null spaces computed once per input.

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "loranull/backend/backend.hpp"
#include "loranull/core/error.hpp"
#include "loranull/linalg/covariance.hpp"
#include "loranull/linalg/null_space.hpp"
#include "loranull/llama/config.hpp"
#include "loranull/llama/layout.hpp"
#include "loranull/llama/model.hpp"
#include "loranull/lora/methods.hpp"

namespace loranull {

/// The four input covariances of one block, accumulated in Tc.
template <class Bk, Real Tc = double>
class BlockCalibration {
public:
    BlockCalibration(Bk& b, const LlamaConfig& config, Normalisation normalisation, const std::string& data_id) {
        for (LinearInput input : all_inputs) covariance_[slot(input)].emplace(b, input_dim(config, input), normalisation, data_id);
    }

    /// X (size x tokens, samples of seq_len tokens each) seen at `input`.
    template <class M>
    void add(LinearInput input, const M& x, Index seq_len) {
        covariance_[slot(input)]->add_samples(x, seq_len);
    }

    const Covariance<Bk, Tc>& covariance(LinearInput input) const { return *covariance_[slot(input)]; }
    const Covariance<Bk, Tc>& covariance(ProjectionKind kind) const { return covariance(input_of(kind)); }

    /// Sums the four covariances over the ranks of `comm` onto `root`
    /// (Covariance::sum_to): each rank forwarded its own samples.
    template <class Comm>
    void sum_to(Comm& comm, int root) {
        for (auto& c : covariance_) c->sum_to(comm, root);
    }

    /// The null space of rank r of each input (computed once, shared by the
    /// projections that read it).
    std::array<NullSpace<Bk, Tc>, 4> null_spaces(Index rank, NullSpaceOptions options = {}) const {
        return {null_space(covariance(LinearInput::attn_in), rank, options),
                null_space(covariance(LinearInput::o_in), rank, options),
                null_space(covariance(LinearInput::mlp_in), rank, options),
                null_space(covariance(LinearInput::down_in), rank, options)};
    }

    /// What `initialise` reads for projection `kind`: its input's covariance,
    /// and its null space when given.
    MethodData<Bk, Tc> data_for(ProjectionKind kind, const std::array<NullSpace<Bk, Tc>, 4>* spaces = nullptr) const {
        MethodData<Bk, Tc> data;
        data.covariance = &covariance(kind);
        if (spaces) data.null_space = &(*spaces)[slot(input_of(kind))];
        return data;
    }

    static std::size_t slot(LinearInput input) { return static_cast<std::size_t>(input); }

private:
    std::array<std::optional<Covariance<Bk, Tc>>, 4> covariance_;
};

/// Every block's BlockCalibration, fed by whole-model forward passes.
template <class Bk, Real Tc = double>
class ModelCalibration {
public:
    ModelCalibration(Bk& b, const LlamaConfig& config, Normalisation normalisation, const std::string& data_id) {
        blocks_.reserve(static_cast<std::size_t>(config.n_layers));
        for (Index l = 0; l < config.n_layers; ++l) blocks_.emplace_back(b, config, normalisation, data_id);
    }

    /// For LlamaModel's hook: X seen at `input` of block `layer`.
    template <class M>
    void add(Index layer, LinearInput input, const M& x, Index seq_len) {
        require(layer >= 0 && layer < layers(), "ModelCalibration::add", "layer ", layer, " of a ", layers(),
                "-layer model");
        blocks_[static_cast<std::size_t>(layer)].add(input, x, seq_len);
    }

    /// One forward pass of `model` over `tokens` (sequences of seq_len) that
    /// accumulates every block's inputs.
    template <Real T>
    void calibrate(LlamaModel<Bk, T>& model, const std::vector<std::int32_t>& tokens, Index seq_len) {
        model.forward(tokens, seq_len, [&](Index layer, LinearInput input, const matrix_t<Bk, T>& x) {
            add(layer, input, x, seq_len);
        });
    }

    Index layers() const { return static_cast<Index>(blocks_.size()); }
    const BlockCalibration<Bk, Tc>& block(Index layer) const { return blocks_.at(static_cast<std::size_t>(layer)); }

private:
    std::vector<BlockCalibration<Bk, Tc>> blocks_;
};

}  // namespace loranull
