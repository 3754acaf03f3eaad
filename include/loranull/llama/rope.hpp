#pragma once
// The rotary embedding's inverse frequencies, as Hugging Face transformers
// computes them (modeling_rope_utils: the default, linear, llama3 and dynamic
// rope types), in double:
//
//   default  f_i = theta^(-2i / d_head),  i < d_head / 2
//   linear   f_i / factor
//   llama3   (LLaMA 3.1, 3.2) with L = original_max_position_embeddings and
//            wavelength w_i = 2 pi / f_i, lo = L / low_freq_factor, hi = L / high_freq_factor:
//              w_i > lo        f_i / factor          (long waves: scaled)
//              w_i < hi        f_i                   (short waves: kept)
//              otherwise       (1 - a) f_i / factor + a f_i,
//                              a = (L / w_i - low_freq_factor) / (high_freq_factor - low_freq_factor)
//            the attention scaling stays 1
//   dynamic  (NTK) changes theta only for sequences longer than
//            max_position_embeddings, which the model refuses: the default
//
// The backends rotate with these (NnBackend::rope), so every rope type runs
// on every backend through the same kernel.

#include <cmath>
#include <numbers>
#include <vector>

#include "loranull/core/error.hpp"
#include "loranull/llama/config.hpp"

namespace loranull {

/// Plain RoPE: theta^(-2i / head_dim), i < head_dim / 2.
inline std::vector<double> rope_frequencies(double theta, Index head_dim) {
    require(theta > 0 && head_dim >= 2 && head_dim % 2 == 0, "rope_frequencies", "theta ", theta, ", head_dim ",
            head_dim, " (need theta > 0 and an even head_dim)");
    std::vector<double> f(static_cast<std::size_t>(head_dim / 2));
    for (std::size_t i = 0; i < f.size(); ++i) f[i] = std::pow(theta, -2.0 * double(i) / double(head_dim));
    return f;
}

/// The frequencies of `config`: its theta, head_dim and rope_scaling.
inline std::vector<double> rope_frequencies(const LlamaConfig& config) {
    std::vector<double> f = rope_frequencies(config.rope_theta, config.head_dim());
    const RopeScaling& s = config.rope_scaling;
    switch (s.type) {
        case RopeScaling::Type::none:
        case RopeScaling::Type::dynamic: break;
        case RopeScaling::Type::linear:
            for (double& x : f) x /= s.factor;
            break;
        case RopeScaling::Type::llama3: {
            const double l = double(s.original_max_position);
            const double low_wavelength = l / s.low_freq_factor, high_wavelength = l / s.high_freq_factor;
            for (double& x : f) {
                const double wavelength = 2 * std::numbers::pi / x;
                if (wavelength > low_wavelength) {
                    x /= s.factor;
                } else if (wavelength >= high_wavelength) {
                    const double a = (l / wavelength - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
                    x = (1 - a) * x / s.factor + a * x;
                }
            }
            break;
        }
    }
    return f;
}

}  // namespace loranull
