#pragma once
// What a model knows and what it can do, measured.
//
//   bits per byte   mean next-byte cross-entropy on held-out text / ln 2
//   exact match     greedy decoding after the prompt reproduces the answer
//                   exactly. Greedy decoding emits the answer iff, given the
//                   answer's own prefix, the argmax is the next answer byte at
//                   every position (the terminator included): one
//                   teacher-forced forward pass decides it, no sampling loop.
//   answer loss     bits per answer byte under teacher forcing
//
// Items are right-padded to a common length: attention is causal, so padding
// after an answer cannot change the logits that score it.

#include <cmath>
#include <numbers>
#include <string>
#include <utility>
#include <vector>

#include <loranull/llama/model.hpp>

#include "corpus.hpp"

namespace experiment {

struct ExactMatch {
    double accuracy = 0;          // fraction of items answered exactly
    double answer_bits = 0;       // mean bits per answer byte
    std::vector<bool> correct;    // per item
};

/// A prompt and the answer greedy decoding should produce after it.
struct PromptAnswer {
    std::string prompt, answer;
};

template <class Bk, loranull::Real T>
ExactMatch exact_match(loranull::LlamaModel<Bk, T>& model, const std::vector<PromptAnswer>& items, Index batch = 128) {
    require(!items.empty(), "exact_match", "no items to evaluate");
    std::size_t longest = 0;
    for (const auto& item : items) {
        require(!item.prompt.empty() && !item.answer.empty(), "exact_match", "empty prompt or answer");
        longest = std::max(longest, item.prompt.size() + item.answer.size());
    }
    const Index seq_len = static_cast<Index>(longest) - 1;
    require(seq_len <= model.config.max_seq_len, "exact_match", "an item of ", longest,
            " bytes does not fit the model's max_seq_len ", model.config.max_seq_len);
    ExactMatch result;
    result.correct.assign(items.size(), false);
    double bits = 0;
    std::size_t answer_bytes = 0, right = 0;
    for (std::size_t first = 0; first < items.size(); first += static_cast<std::size_t>(batch)) {
        const std::size_t last = std::min(items.size(), first + static_cast<std::size_t>(batch));
        Tokens tokens;
        for (std::size_t i = first; i < last; ++i) {
            std::string s = items[i].prompt + items[i].answer;
            s.resize(longest, '\n');  // padding; never scored
            for (std::size_t p = 0; p + 1 < s.size(); ++p) tokens.push_back(static_cast<unsigned char>(s[p]));
        }
        const loranull::HostMatrix<T> logits = model.backend().download(model.forward(tokens, seq_len));
        const Index vocab = logits.rows();
        for (std::size_t i = first; i < last; ++i) {
            const std::string s = items[i].prompt + items[i].answer;
            bool all = true;
            // Position p predicts byte p + 1; the answer is bytes |prompt| .. |s| - 1.
            for (std::size_t p = items[i].prompt.size() - 1; p + 1 < s.size(); ++p) {
                const Index column = static_cast<Index>((i - first) * static_cast<std::size_t>(seq_len) + p);
                const Index target = static_cast<unsigned char>(s[p + 1]);
                Index best = 0;
                double max = -INFINITY;
                for (Index v = 0; v < vocab; ++v)
                    if (double(logits(v, column)) > max) max = double(logits(v, column)), best = v;
                double sum = 0;
                for (Index v = 0; v < vocab; ++v) sum += std::exp(double(logits(v, column)) - max);
                bits += (std::log(sum) + max - double(logits(target, column))) / std::numbers::ln2;
                ++answer_bytes;
                all = all && best == target;
            }
            result.correct[i] = all;
            right += all ? 1 : 0;
        }
    }
    result.accuracy = double(right) / double(items.size());
    result.answer_bits = bits / double(answer_bytes);
    return result;
}

/// Mean bits per byte over fixed batches of windows (held-out text).
template <class Bk, loranull::Real T>
double bits_per_byte(loranull::LlamaModel<Bk, T>& model, const std::vector<Batch>& batches, Index seq_len) {
    require(!batches.empty(), "bits_per_byte", "no batches");
    double nats = 0, tokens = 0;
    for (const Batch& b : batches) {
        nats += model.loss(b.tokens, b.targets, seq_len) * double(b.tokens.size());
        tokens += double(b.tokens.size());
    }
    return nats / tokens / std::numbers::ln2;
}

inline std::vector<PromptAnswer> fact_items(const std::vector<Fact>& facts) {
    std::vector<PromptAnswer> out;
    for (const Fact& f : facts) out.push_back({f.prompt(), f.answer()});
    return out;
}

inline std::vector<PromptAnswer> problem_items(const std::vector<Problem>& problems) {
    std::vector<PromptAnswer> out;
    for (const Problem& p : problems) out.push_back({p.prompt(), p.answer()});
    return out;
}

}  // namespace experiment
