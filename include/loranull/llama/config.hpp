#pragma once
// LlamaConfig: the hyper-parameters of a LLaMA decoder, with Hugging Face's
// config.json field names noted beside each.

#include <cstdint>
#include <string>

#include "loranull/core/error.hpp"
#include "loranull/core/types.hpp"

namespace loranull {

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

    Index head_dim() const { return dim / n_heads; }

    /// Throws loranull::error naming the first value that does not fit.
    void validate() const {
        const char* where = "LlamaConfig";
        require(dim > 0 && n_layers > 0 && n_heads > 0 && n_kv_heads > 0 && hidden_dim > 0 && vocab_size > 0 &&
                    max_seq_len > 0,
                where, "every size must be positive (dim ", dim, ", layers ", n_layers, ", heads ", n_heads,
                ", kv heads ", n_kv_heads, ", hidden ", hidden_dim, ", vocab ", vocab_size, ", max_seq_len ",
                max_seq_len, ")");
        require(dim % n_heads == 0, where, "dim ", dim, " is not divisible by n_heads ", n_heads);
        require(n_heads % n_kv_heads == 0, where, "n_heads ", n_heads, " is not divisible by n_kv_heads ", n_kv_heads);
        require(head_dim() % 2 == 0, where, "head_dim ", head_dim(), " must be even for rotary embeddings");
        require(rope_theta > 0 && norm_eps > 0, where, "rope_theta and norm_eps must be positive");
    }

    /// Number of parameters (lm_head counted once when tied).
    std::int64_t parameter_count() const {
        const std::int64_t d = dim, h = hidden_dim, kv = n_kv_heads * head_dim();
        const std::int64_t block = 2 * d + d * d * 2 + 2 * d * kv + 3 * d * h;
        return vocab_size * d * (tied_embeddings ? 1 : 2) + n_layers * block + d;
    }
};

}  // namespace loranull
