#pragma once
// One training loop for pretraining and fine-tuning: AdamW over whatever
// trains, global-norm clipping, cosine schedule with linear warm-up.

#include <cmath>
#include <cstdio>
#include <numbers>
#include <string>
#include <vector>

#include <loranull/llama/model.hpp>
#include <loranull/llama/train.hpp>

#include <loranull/io/progress_bar.hpp>

#include "corpus.hpp"

namespace experiment {

struct Schedule {
    long steps = 300;
    double peak_lr = 1e-3;
    double warmup_fraction = 0.05;  // of the steps
    double final_lr_fraction = 0.1; // the cosine ends at peak * this
    loranull::AdamWConfig adam{};
};

/// No evaluation between steps.
struct NoEvaluation {
    std::string operator()(long, double) const { return {}; }
};

/// Runs `schedule.steps` steps on batches from next_batch(step) and returns
/// the training loss of every step in bits per byte; it stops early, with
/// fewer losses than steps, when the loss or the gradient stops being finite
/// (a rate too high for the method: the caller records the run as diverged).
/// After each step,
/// evaluate(step + 1, smoothed loss) may measure something and return a note
/// for the progress bar (empty: the bar shows the smoothed loss).
template <class Bk, loranull::Real T, class NextBatch, class Evaluate = NoEvaluation>
std::vector<double> train(loranull::LlamaModel<Bk, T>& model, const Schedule& schedule, Index seq_len,
                          NextBatch&& next_batch, loranull::io::ProgressBar& progress, Evaluate&& evaluate = {}) {
    loranull::AdamW<Bk, T> optimizer(schedule.adam);
    const long warmup = static_cast<long>(std::lround(schedule.warmup_fraction * double(schedule.steps)));
    std::vector<double> losses;
    losses.reserve(static_cast<std::size_t>(schedule.steps));
    double smoothed = 0;
    for (long step = 0; step < schedule.steps; ++step) {
        const Batch batch = next_batch(step);
        model.zero_grad();
        const double loss = model.loss(batch.tokens, batch.targets, seq_len);
        if (!std::isfinite(loss)) break;
        model.backward();
        const double lr =
            loranull::cosine_lr(step, schedule.steps, warmup, schedule.peak_lr, schedule.peak_lr * schedule.final_lr_fraction);
        try {
            optimizer.step(model.backend(), model.parameters(), lr);
        } catch (const loranull::error&) {  // the gradient norm is not finite
            break;
        }
        losses.push_back(loss / std::numbers::ln2);
        smoothed = step == 0 ? losses.back() : 0.95 * smoothed + 0.05 * losses.back();
        std::string note = evaluate(step + 1, smoothed);
        if (note.empty()) {
            char buffer[64];
            std::snprintf(buffer, sizeof buffer, "loss %.3f bits/byte", smoothed);
            note = buffer;
        }
        progress.set(step + 1, note);
    }
    return losses;
}

/// Number of values that train (have a gradient) after zero_grad().
template <class Bk, loranull::Real T>
std::int64_t trainable_parameters(loranull::LlamaModel<Bk, T>& model) {
    model.zero_grad();
    std::int64_t n = 0;
    for (const auto& p : model.parameters())
        if (p.grad) n += static_cast<std::int64_t>(p.value->rows()) * p.value->cols();
    return n;
}

}  // namespace experiment
