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
#include "loranull/core/host_matrix.hpp"
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
    BlockCalibration(Bk& b, const LlamaConfig& config, Normalisation normalisation, const std::string& data_id,
                     Accumulation accumulation = Accumulation::fp64) {
        for (LinearInput input : all_inputs) {
            covariance_[slot(input)].emplace(b, input_dim(config, input), normalisation, data_id);
            covariance_[slot(input)]->set_accumulation(accumulation);
        }
    }

    /// X (size x tokens, samples of seq_len tokens each) seen at `input`.
    template <class M>
    void add(LinearInput input, const M& x, Index seq_len) {
        last_squared_scales_[slot(input)] = covariance_[slot(input)]->add_samples(x, seq_len);
    }

    /// Y = W X of projection `kind` (without its bias) on the X last added at
    /// its input: accumulates ||W X||_F^2 under the covariance's
    /// normalisation, so that output_energy(kind) = <W C, W> without the
    /// O(m n^2) product (the knowledge report's scale).
    template <class M>
    void add_output(ProjectionKind kind, const M& y, Index seq_len) {
        Bk& b = covariance(kind).backend();
        const std::size_t k = static_cast<std::size_t>(kind);
        if (covariance(kind).normalisation() == Normalisation::plain) {
            output_sum_[k] += b.sum_of_squares(y);
            return;
        }
        const std::vector<double>& scales = last_squared_scales_[slot(input_of(kind))];
        require(static_cast<Index>(scales.size()) * seq_len == y.cols(), "BlockCalibration::add_output", "Y has ",
                y.cols(), " columns, the last X at ", input_name(input_of(kind)), " had ", scales.size(),
                " samples of ", seq_len);
        for (std::size_t s = 0; s < scales.size(); ++s)
            output_sum_[k] += b.sum_of_squares(b.block(y, 0, Index(s) * seq_len, y.rows(), seq_len)) / scales[s];
    }

    /// <W C, W> = ||W X||_F^2 / normaliser for `kind` from add_output; -1 when
    /// no output was added.
    double output_energy(ProjectionKind kind) const {
        const std::size_t k = static_cast<std::size_t>(kind);
        const auto& c = covariance(kind);
        if (!outputs_seen_[k] || c.empty()) return -1;
        return output_sum_[k] / c.normaliser();
    }

    const Covariance<Bk, Tc>& covariance(LinearInput input) const { return *covariance_[slot(input)]; }
    const Covariance<Bk, Tc>& covariance(ProjectionKind kind) const { return covariance(input_of(kind)); }

    /// Sums the four covariances over the ranks of `comm` onto `root`
    /// (Covariance::sum_to): each rank forwarded its own samples.
    template <class Comm>
    void sum_to(Comm& comm, int root) {
        for (auto& c : covariance_) c->sum_to(comm, root);
        Bk& b = covariance_[0]->backend();
        HostMatrix<double> sums(static_cast<Index>(output_sum_.size()), 1);
        std::copy(output_sum_.begin(), output_sum_.end(), sums.data());
        matrix_t<Bk, double> m = b.upload(sums);
        comm.sum_to(b, m, root);
        const HostMatrix<double> total = b.download(m);
        if (comm.rank() == root) std::copy_n(total.data(), output_sum_.size(), output_sum_.begin());
    }

    /// The null space of rank r of each input (computed once, shared by the
    /// projections that read it).
    std::array<NullSpace<Bk, Tc>, 4> null_spaces(Index rank, NullSpaceOptions options = {}) const {
        return {null_space(covariance(LinearInput::attn_in), rank, options),
                null_space(covariance(LinearInput::o_in), rank, options),
                null_space(covariance(LinearInput::mlp_in), rank, options),
                null_space(covariance(LinearInput::down_in), rank, options)};
    }

    /// The same from the four C = covariance(input).matrix() already formed (by slot).
    std::array<NullSpace<Bk, Tc>, 4> null_spaces(Index rank, const std::array<matrix_t<Bk, Tc>, 4>& c,
                                                 NullSpaceOptions options = {}) const {
        auto one = [&](LinearInput i) { return null_space(covariance(i), c[slot(i)], rank, options); };
        return {one(LinearInput::attn_in), one(LinearInput::o_in), one(LinearInput::mlp_in), one(LinearInput::down_in)};
    }

    /// C of every input, normalised and symmetric (by slot).
    std::array<matrix_t<Bk, Tc>, 4> matrices() const {
        return {covariance(LinearInput::attn_in).matrix(), covariance(LinearInput::o_in).matrix(),
                covariance(LinearInput::mlp_in).matrix(), covariance(LinearInput::down_in).matrix()};
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

    /// Marks that every projection's outputs go to add_output (the builder's
    /// hook): output_energy is then defined, on every rank.
    void expect_outputs() { outputs_seen_.fill(true); }

private:
    std::array<std::optional<Covariance<Bk, Tc>>, 4> covariance_;
    std::array<double, 7> output_sum_{};         // sum_k ||W X_k||^2 / c_k^2 per projection
    std::array<bool, 7> outputs_seen_{};
    std::array<std::vector<double>, 4> last_squared_scales_;  // c_k^2 of the last add per input (reference)
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
