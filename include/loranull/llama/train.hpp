#pragma once
// Training utilities: AdamW as one loop over the parameters that train,
// global gradient-norm clipping, and the cosine learning-rate schedule with
// linear warm-up (SPEC.md section 7 trains with lr 2e-5, cosine, 3% warm-up).

#include <cmath>
#include <numbers>
#include <vector>

#include "loranull/backend/backend.hpp"
#include "loranull/backend/nn.hpp"
#include "loranull/core/error.hpp"
#include "loranull/llama/model.hpp"

namespace loranull {

struct AdamWConfig {
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.0;   // decoupled (Loshchilov and Hutter)
    double clip_norm = 1.0;      // global gradient-norm clipping; <= 0 turns it off
};

/// lr at `step` (0-based) of `total`: linear warm-up over `warmup` steps to
/// peak, then cosine decay to min_lr at the end.
inline double cosine_lr(long step, long total, long warmup, double peak, double min_lr = 0.0) {
    require(total > 0 && warmup >= 0 && step >= 0, "cosine_lr", "step ", step, " of ", total, " with warm-up ", warmup);
    if (step < warmup) return peak * double(step + 1) / double(warmup);
    const double progress = total > warmup ? double(step - warmup) / double(std::max<long>(1, total - warmup)) : 1.0;
    return min_lr + 0.5 * (peak - min_lr) * (1.0 + std::cos(std::numbers::pi * std::min(1.0, progress)));
}

/// AdamW over a model's trainable parameters. The moment buffers are created
/// on the first step for exactly the parameters that have a gradient.
template <class Bk, Real T>
class AdamW {
public:
    using Matrix = matrix_t<Bk, T>;

    explicit AdamW(AdamWConfig config = {}) : config_(config) {}

    /// One update; returns the global gradient norm before clipping.
    double step(Bk& b, std::vector<ParameterRef<Matrix>> parameters, double lr) {
        double squared = 0;
        for (auto& p : parameters)
            if (p.grad) {
                const double n = double(b.frobenius_norm(*p.grad));
                squared += n * n;
            }
        const double norm = std::sqrt(squared);
        require(std::isfinite(norm), "AdamW::step", "gradient norm is not finite");
        if (config_.clip_norm > 0 && norm > config_.clip_norm)
            for (auto& p : parameters)
                if (p.grad) b.scale(static_cast<T>(config_.clip_norm / norm), *p.grad);
        if (state_.empty())
            for (auto& p : parameters)
                if (p.grad)
                    state_.push_back({zeros<T>(b, p.value->rows(), p.value->cols()),
                                      zeros<T>(b, p.value->rows(), p.value->cols())});
        ++step_;
        std::size_t i = 0;
        for (auto& p : parameters) {
            if (!p.grad) continue;
            require(i < state_.size(), "AdamW::step", "the set of trainable parameters changed between steps");
            b.adamw_update(*p.value, *p.grad, state_[i].m, state_[i].v, lr, config_.beta1, config_.beta2, config_.eps,
                           config_.weight_decay, step_);
            ++i;
        }
        require(i == state_.size(), "AdamW::step", "the set of trainable parameters changed between steps");
        return norm;
    }

    long steps() const { return step_; }

    /// The first and second moments of each trainable parameter, in the order
    /// of parameters() (empty before the first step).
    struct Moments {
        Matrix m, v;
    };
    const std::vector<Moments>& moments() const { return state_; }

    /// Continues from a saved state (a checkpoint's step count and moments):
    /// the next step() is then bit-identical to the one an uninterrupted run takes.
    void restore(long steps, std::vector<Moments> moments) {
        require(steps >= 0 && (steps == 0) == moments.empty(), "AdamW::restore", steps, " steps with ", moments.size(),
                " moment pairs");
        step_ = steps;
        state_ = std::move(moments);
    }

private:
    AdamWConfig config_;
    std::vector<Moments> state_;
    long step_ = 0;
};

}  // namespace loranull
