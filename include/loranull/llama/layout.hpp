#pragma once
// The layout of a LLaMA block: its seven projections, the four distinct inputs
// they read, their names in Hugging Face checkpoints, and their shapes and
// biases under a LlamaConfig.
//
//   input         read by            size
//   attn_in       q, k, v            dim              (the attention norm's output)
//   o_in          o                  heads * head_dim (the attention's output)
//   mlp_in        gate, up           dim              (the MLP norm's output)
//   down_in       down               hidden_dim       (silu(gate) * up)

#include <algorithm>
#include <array>
#include <string>

#include "loranull/core/types.hpp"
#include "loranull/llama/config.hpp"

namespace loranull {

enum class ProjectionKind { q, k, v, o, gate, up, down };
inline constexpr std::array<ProjectionKind, 7> all_projections = {ProjectionKind::q,    ProjectionKind::k,
                                                                  ProjectionKind::v,    ProjectionKind::o,
                                                                  ProjectionKind::gate, ProjectionKind::up,
                                                                  ProjectionKind::down};

/// "q_proj", ..., "down_proj".
inline const char* projection_name(ProjectionKind p) {
    switch (p) {
        case ProjectionKind::q: return "q_proj";
        case ProjectionKind::k: return "k_proj";
        case ProjectionKind::v: return "v_proj";
        case ProjectionKind::o: return "o_proj";
        case ProjectionKind::gate: return "gate_proj";
        case ProjectionKind::up: return "up_proj";
        case ProjectionKind::down: return "down_proj";
    }
    return "?";
}

/// "self_attn.q_proj", "mlp.down_proj", ...: the module path inside a block.
inline std::string projection_path(ProjectionKind p) {
    const bool attention = p == ProjectionKind::q || p == ProjectionKind::k || p == ProjectionKind::v || p == ProjectionKind::o;
    return std::string(attention ? "self_attn." : "mlp.") + projection_name(p);
}

/// The four distinct inputs of a block's linear layers.
enum class LinearInput { attn_in, o_in, mlp_in, down_in };

/// Which input a projection reads.
inline LinearInput input_of(ProjectionKind p) {
    switch (p) {
        case ProjectionKind::q: case ProjectionKind::k: case ProjectionKind::v: return LinearInput::attn_in;
        case ProjectionKind::o: return LinearInput::o_in;
        case ProjectionKind::gate: case ProjectionKind::up: return LinearInput::mlp_in;
        case ProjectionKind::down: return LinearInput::down_in;
    }
    return LinearInput::attn_in;
}

inline constexpr std::array<LinearInput, 4> all_inputs = {LinearInput::attn_in, LinearInput::o_in, LinearInput::mlp_in,
                                                          LinearInput::down_in};

/// "attn_in", "o_in", "mlp_in", "down_in" (file names, reports).
inline const char* input_name(LinearInput input) {
    switch (input) {
        case LinearInput::attn_in: return "attn_in";
        case LinearInput::o_in: return "o_in";
        case LinearInput::mlp_in: return "mlp_in";
        case LinearInput::down_in: return "down_in";
    }
    return "?";
}

/// {out, in} of a projection of `config` (PyTorch's weight shape): q is
/// (heads head_dim) x dim and o its transpose shape, which need not be square.
inline std::array<Index, 2> projection_shape(const LlamaConfig& config, ProjectionKind kind) {
    const Index d = config.dim, q = config.q_dim(), kv = config.kv_dim(), h = config.hidden_dim;
    switch (kind) {
        case ProjectionKind::q: return {q, d};
        case ProjectionKind::o: return {d, q};
        case ProjectionKind::k: case ProjectionKind::v: return {kv, d};
        case ProjectionKind::gate: case ProjectionKind::up: return {h, d};
        case ProjectionKind::down: return {d, h};
    }
    return {0, 0};
}

/// The size of an input: the `in` of the projections that read it.
inline Index input_dim(const LlamaConfig& config, LinearInput input) {
    for (ProjectionKind kind : all_projections)
        if (input_of(kind) == input) return projection_shape(config, kind)[1];
    return 0;
}

/// The largest LoRA rank every projection admits: min over them of min(out, in).
inline Index max_rank(const LlamaConfig& config) {
    Index smallest = -1;
    for (ProjectionKind kind : all_projections) {
        const auto [out, in] = projection_shape(config, kind);
        const Index fits = std::min(out, in);
        smallest = smallest < 0 ? fits : std::min(smallest, fits);
    }
    return smallest;
}

/// Whether projection `kind` carries a bias under `config`.
inline bool has_bias(const LlamaConfig& config, ProjectionKind kind) {
    switch (kind) {
        case ProjectionKind::q: case ProjectionKind::k: case ProjectionKind::v: return config.qkv_has_bias();
        case ProjectionKind::o: return config.attention_has_bias();
        case ProjectionKind::gate: case ProjectionKind::up: case ProjectionKind::down: return config.mlp_has_bias();
    }
    return false;
}

}  // namespace loranull
