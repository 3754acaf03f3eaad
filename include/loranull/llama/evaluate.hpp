#pragma once
// The negative log-likelihood of next-token prediction: what a language
// model's perplexity is computed from. For each sequence of T tokens the
// logits at positions 0 .. T-2 predict tokens 1 .. T-1 (T - 1 predictions a
// sequence, as transformers' labels = input_ids with the shift inside the
// model); the mean is over every prediction of every sequence.
//
//   mean NLL = sum of -log p(token) / predictions     (nats)
//   perplexity = exp(mean NLL),  bits per token = mean NLL / ln 2

#include <cmath>
#include <cstdint>
#include <functional>
#include <numbers>
#include <vector>

#include "loranull/backend/nn.hpp"
#include "loranull/core/error.hpp"
#include "loranull/llama/model.hpp"

namespace loranull {

struct NllResult {
    double total = 0;       // sum of -log p over the predictions (nats)
    Index predictions = 0;  // (seq_len - 1) per sequence

    double mean() const { return predictions > 0 ? total / double(predictions) : 0.0; }
    double perplexity() const { return std::exp(mean()); }
    double bits_per_token() const { return mean() / std::numbers::ln2; }
};

/// NLL of `tokens` (samples x seq_len, sequence after sequence) under `model`,
/// `batch` sequences per forward pass. `on_logits(first_sequence, logits)`,
/// when given, receives each batch's logits (vocab x batch seq_len).
template <class Bk, Real T>
NllResult sequence_nll(LlamaModel<Bk, T>& model, const std::vector<std::int32_t>& tokens, Index seq_len, Index batch,
                       const std::function<void(Index, const matrix_t<Bk, T>&)>& on_logits = {}) {
    const char* where = "sequence_nll";
    require(seq_len >= 2 && batch >= 1 && !tokens.empty() && static_cast<Index>(tokens.size()) % seq_len == 0, where,
            tokens.size(), " tokens, sequences of ", seq_len, " (need whole sequences of at least 2), batch ", batch);
    const Index samples = static_cast<Index>(tokens.size()) / seq_len;
    NllResult result;
    matrix_t<Bk, T> probs;
    for (Index first = 0; first < samples; first += batch) {
        const Index count = std::min(batch, samples - first);
        const auto begin = tokens.begin() + first * seq_len, end = begin + count * seq_len;
        const std::vector<std::int32_t> input(begin, end);
        std::vector<std::int32_t> targets(input.size(), ignore_target);
        for (Index s = 0; s < count; ++s)
            for (Index t = 0; t + 1 < seq_len; ++t)
                targets[static_cast<std::size_t>(s * seq_len + t)] = input[static_cast<std::size_t>(s * seq_len + t + 1)];
        const auto logits = model.forward(input, seq_len);
        const Index predicted = count * (seq_len - 1);
        const double batch_nll = model.backend().cross_entropy_forward(logits, targets, probs);
        require(std::isfinite(batch_nll), where, "the logits of sequences ", first, " .. ", first + count - 1,
                " hold NaN or Inf (a weight of the model holds NaN or Inf, or overflows)");
        result.total += batch_nll * double(predicted);
        result.predictions += predicted;
        if (on_logits) on_logits(first, logits);
    }
    return result;
}

}  // namespace loranull
