#pragma once
// LlamaConfig: the hyper-parameters of a LLaMA-family decoder (LLaMA 2, 3,
// 3.1, 3.2, Mistral, Qwen2), with Hugging Face's config.json field names noted
// beside each. What each key does to the computation: docs/llama.md, "The
// families".

#include <cstdint>
#include <string>

#include "loranull/core/error.hpp"
#include "loranull/core/types.hpp"

namespace loranull {

/// config.json's rope_scaling: how the rotary frequencies are rescaled.
struct RopeScaling {
    enum class Type { none, linear, llama3, dynamic };
    Type type = Type::none;
    double factor = 1;                   // linear, llama3, dynamic
    double low_freq_factor = 1;          // llama3
    double high_freq_factor = 4;         // llama3
    Index original_max_position = 8192;  // llama3: original_max_position_embeddings

    bool operator==(const RopeScaling&) const = default;
};

/// Which projections carry a bias (a frozen part of the base model).
enum class BiasScheme { none, qkv, attention, mlp, attention_and_mlp };

struct LlamaConfig {
    Index dim = 64;            // hidden_size
    Index n_layers = 2;        // num_hidden_layers
    Index n_heads = 4;         // num_attention_heads
    Index n_kv_heads = 4;      // num_key_value_heads (grouped-query attention when < n_heads)
    Index hidden_dim = 172;    // intermediate_size (the SwiGLU width)
    Index vocab_size = 256;    // vocab_size
    Index max_seq_len = 128;   // max_position_embeddings
    double rope_theta = 10000; // rope_theta
    double norm_eps = 1e-5;    // rms_norm_eps
    bool tied_embeddings = false;  // tie_word_embeddings: lm_head = embed_tokens
    Index head_size = 0;       // head_dim; 0: hidden_size / num_attention_heads
    RopeScaling rope_scaling;  // rope_scaling
    BiasScheme biases = BiasScheme::none;  // attention_bias / mlp_bias; Qwen2: q, k, v always
    Index sliding_window = 0;  // Mistral's sliding_window (Qwen2's when use_sliding_window); 0: none
    std::string model_type = "llama";  // llama, mistral, qwen2 (written back to config.json)

    Index head_dim() const { return head_size > 0 ? head_size : dim / n_heads; }
    /// The width of q and of the attention's output: heads * head_dim (need not be dim).
    Index q_dim() const { return n_heads * head_dim(); }
    Index kv_dim() const { return n_kv_heads * head_dim(); }

    bool attention_has_bias() const {
        return biases == BiasScheme::attention || biases == BiasScheme::attention_and_mlp;
    }
    bool qkv_has_bias() const { return biases == BiasScheme::qkv || attention_has_bias(); }
    bool mlp_has_bias() const { return biases == BiasScheme::mlp || biases == BiasScheme::attention_and_mlp; }

    /// Throws loranull::error naming the first value that does not fit.
    void validate() const {
        const char* where = "LlamaConfig";
        require(dim > 0 && n_layers > 0 && n_heads > 0 && n_kv_heads > 0 && hidden_dim > 0 && vocab_size > 0 &&
                    max_seq_len > 0 && head_size >= 0 && sliding_window >= 0,
                where, "every size must be positive (dim ", dim, ", layers ", n_layers, ", heads ", n_heads,
                ", kv heads ", n_kv_heads, ", hidden ", hidden_dim, ", vocab ", vocab_size, ", max_seq_len ",
                max_seq_len, ", head_dim ", head_size, ", sliding_window ", sliding_window, ")");
        require(head_size > 0 || dim % n_heads == 0, where, "dim ", dim, " is not divisible by n_heads ", n_heads,
                " (and no head_dim is given)");
        require(n_heads % n_kv_heads == 0, where, "n_heads ", n_heads, " is not divisible by n_kv_heads ", n_kv_heads);
        require(head_dim() % 2 == 0, where, "head_dim ", head_dim(), " must be even for rotary embeddings");
        require(rope_theta > 0 && norm_eps > 0, where, "rope_theta and norm_eps must be positive");
        const RopeScaling& s = rope_scaling;
        require(s.type == RopeScaling::Type::none || s.factor > 0, where, "rope_scaling factor ", s.factor,
                " must be positive");
        require(s.type != RopeScaling::Type::llama3 ||
                    (s.high_freq_factor > s.low_freq_factor && s.low_freq_factor > 0 && s.original_max_position > 0),
                where, "rope_scaling llama3 needs 0 < low_freq_factor < high_freq_factor and "
                       "original_max_position_embeddings > 0 (got ", s.low_freq_factor, ", ", s.high_freq_factor, ", ",
                s.original_max_position, ")");
    }

    /// Number of parameters (lm_head counted once when tied; biases included).
    std::int64_t parameter_count() const {
        const std::int64_t d = dim, h = hidden_dim, q = q_dim(), kv = kv_dim();
        std::int64_t block = 2 * d + 2 * d * q + 2 * d * kv + 3 * d * h;
        if (qkv_has_bias()) block += q + 2 * kv;
        if (attention_has_bias()) block += d;
        if (mlp_has_bias()) block += 2 * h + d;
        return vocab_size * d * (tied_embeddings ? 1 : 2) + n_layers * block + d;
    }
};

}  // namespace loranull
