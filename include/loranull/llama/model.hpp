#pragma once
// LlamaModel: the LLaMA decoder, forward and backward, generic over the backend
// (llm.c's train_gpt2.c in shape: one forward that caches what the backward
// needs, one backward that walks it in reverse).
//
//   x = embed[tokens]                                         d x T
//   per block:  a = RMSNorm(x) g_attn               -> "attn_in"  (q, k, v read it)
//               q = rope(Wq a), k = rope(Wk a), v = Wv a
//               o = attention(q, k, v)  (causal, grouped-query)   -> "o_in"
//               x = x + Wo o
//               m = RMSNorm(x) g_mlp                -> "mlp_in"   (gate, up read it)
//               h = silu(Wgate m) * (Wup m)         -> "down_in"
//               x = x + Wdown h
//   logits = lm_head RMSNorm(x) g_final                       vocab x T
//   loss = mean cross-entropy(logits, targets)
//
// T = batch * seq tokens, sequences laid side by side (token t has position
// t mod seq). RoPE uses Hugging Face's "rotate half" layout, so HF checkpoints
// load without permuting q/k rows. Any projection can carry a LoRA adapter
// (Projection::attach). The calibration hook sees each block's four distinct
// linear inputs, so q/k/v and gate/up share one covariance (SPEC.md section 1).

#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "loranull/backend/backend.hpp"
#include "loranull/backend/nn.hpp"
#include "loranull/core/error.hpp"
#include "loranull/core/random.hpp"
#include "loranull/llama/config.hpp"
#include "loranull/llama/layout.hpp"
#include "loranull/llama/rope.hpp"
#include "loranull/llama/projection.hpp"

namespace loranull {

/// A parameter as the optimizer and the checkpoint code see it.
template <class Matrix>
struct ParameterRef {
    std::string name;  // Hugging Face name, e.g. "model.layers.0.self_attn.q_proj.lora_A"
    Matrix* value;
    Matrix* grad;      // nullptr when frozen
};

template <class Bk, Real T>
class LlamaModel {
public:
    using Matrix = matrix_t<Bk, T>;

    struct Block {
        Matrix attn_norm;  // dim x 1      input_layernorm.weight
        Matrix mlp_norm;   // dim x 1      post_attention_layernorm.weight
        std::array<Projection<Bk, T>, 7> proj;  // indexed by ProjectionKind:
        // q (H hd x dim), k (Hkv hd x dim), v (Hkv hd x dim), o (dim x H hd),
        // gate (hidden x dim), up (hidden x dim), down (dim x hidden); hd is
        // head_dim, H hd need not equal dim. Biases (out x 1) as the config says.
        Matrix d_attn_norm, d_mlp_norm;
        // fuse_products(): [Wq; Wk; Wv] ((H + 2 Hkv) hd x dim) and [Wgate; Wup]
        // (2 hidden x dim), the separate weights then empty; empty otherwise.
        Matrix qkv_weight, gate_up_weight;

        bool fused() const { return qkv_weight.rows() > 0; }

        Projection<Bk, T>& operator[](ProjectionKind p) { return proj[static_cast<std::size_t>(p)]; }
        const Projection<Bk, T>& operator[](ProjectionKind p) const { return proj[static_cast<std::size_t>(p)]; }
    };

    LlamaConfig config;
    Matrix embed;       // dim x vocab       model.embed_tokens.weight ([vocab, dim] on disk)
    std::vector<Block> blocks;
    Matrix final_norm;  // dim x 1           model.norm.weight
    Matrix lm_head;     // vocab x dim       lm_head.weight (empty when tied: embed^T is used)
    bool train_embeddings_and_norms = false;  // full fine-tuning trains these too
    Matrix d_embed, d_final_norm, d_lm_head;

    /// A model with every weight zero (to be filled by init_random or a checkpoint).
    LlamaModel(Bk& backend, LlamaConfig cfg) : config(cfg), backend_(&backend) {
        config.validate();
        const Index d = config.dim;
        embed = zeros<T>(backend, d, config.vocab_size);
        final_norm = ones(d);
        if (!config.tied_embeddings) lm_head = zeros<T>(backend, config.vocab_size, d);
        blocks.resize(static_cast<std::size_t>(config.n_layers));
        for (auto& block : blocks) {
            block.attn_norm = ones(d);
            block.mlp_norm = ones(d);
            for (ProjectionKind kind : all_projections) {
                const auto [out, in] = projection_shape(config, kind);
                block[kind].weight = zeros<T>(backend, out, in);
                if (has_bias(config, kind)) block[kind].bias = zeros<T>(backend, out, 1);
            }
        }
    }

    /// Gaussian weights N(0, 0.02^2) (GPT-2/LLaMA practice), projections into the
    /// residual stream (o, down) scaled by 1/sqrt(2 layers); norms 1.
    void init_random(std::uint64_t seed) {
        Bk& b = *backend_;
        Rng rng(seed);
        auto gaussian = [&](Index rows, Index cols, double stddev) {
            return b.upload(random_normal<T>(rows, cols, rng, stddev));
        };
        embed = gaussian(embed.rows(), embed.cols(), 0.02);
        const double residual = 0.02 / std::sqrt(2.0 * double(config.n_layers));
        for (auto& block : blocks)
            for (ProjectionKind p : all_projections) {
                auto& w = block[p].weight;
                w = gaussian(w.rows(), w.cols(), p == ProjectionKind::o || p == ProjectionKind::down ? residual : 0.02);
                if (block[p].bias.rows() > 0) block[p].bias = gaussian(w.rows(), 1, 0.02);
            }
        if (!config.tied_embeddings) lm_head = gaussian(lm_head.rows(), lm_head.cols(), 0.02);
    }

    /// Called with (layer, which input, X) during forward when set.
    using Hook = std::function<void(Index, LinearInput, const Matrix&)>;
    /// Called with (layer, projection, W X) during block_forward when set:
    /// each projection's output before its bias (the report's ||W X||_F).
    using OutputHook = std::function<void(Index, ProjectionKind, const Matrix&)>;

    /// For a block that only runs forward (block_forward: the builder's
    /// calibration): q, k and v, which read the same input, become one product
    /// of the stacked weight, and gate and up another, instead of five. The
    /// separate weights are moved into the stacks (no extra memory); the block
    /// then serves block_forward only (not backward, not adapters).
    static void fuse_products(Bk& b, Block& block) {
        for (ProjectionKind kind : {ProjectionKind::q, ProjectionKind::k, ProjectionKind::v, ProjectionKind::gate,
                                    ProjectionKind::up})
            require(!block[kind].lora && block[kind].weight.rows() > 0, "LlamaModel::fuse_products",
                    projection_path(kind), " has an adapter or no weight: only dense blocks fuse");
        block.qkv_weight = stack_rows(b, block, {ProjectionKind::q, ProjectionKind::k, ProjectionKind::v});
        block.gate_up_weight = stack_rows(b, block, {ProjectionKind::gate, ProjectionKind::up});
    }

    /// Logits (vocab x T) for tokens (T = batch * seq_len), caching what backward needs.
    Matrix forward(const std::vector<std::int32_t>& tokens, Index seq_len, const Hook& hook = {}) {
        Bk& b = *backend_;
        const char* where = "LlamaModel::forward";
        require(seq_len >= 1 && seq_len <= config.max_seq_len, where, "sequence length ", seq_len,
                " is outside 1 .. max_seq_len = ", config.max_seq_len);
        require(!tokens.empty() && static_cast<Index>(tokens.size()) % seq_len == 0, where, tokens.size(),
                " tokens do not make whole sequences of ", seq_len);
        check_window(config, seq_len, where);
        const AttentionShape shape{config.n_heads, config.n_kv_heads, config.head_dim(), seq_len};
        cache_.tokens = tokens;
        cache_.shape = shape;
        cache_.blocks.resize(blocks.size());
        Matrix x = b.embedding_forward(embed, tokens);
        for (std::size_t l = 0; l < blocks.size(); ++l)
            x = block_forward_cached(b, config, blocks[l], static_cast<Index>(l), std::move(x), shape, hook,
                                     cache_.blocks[l]);
        cache_.x_final = x;
        cache_.normed = b.rmsnorm_forward(x, final_norm, T(config.norm_eps), cache_.rstd_final);
        return config.tied_embeddings ? product(b, embed, cache_.normed, Op::transpose) : product(b, lm_head, cache_.normed);
    }

    /// One block's forward (what forward() runs for each block), for x (dim x T,
    /// T = batch * seq_len) without caching anything: the streaming calibration
    /// of tools/loranull-build runs the blocks one at a time with this, holding
    /// one block's weights at a time. Static, so a lone Block (loaded by itself,
    /// without a whole model) can run; `layer` is only passed to the hook.
    static Matrix block_forward(Bk& b, const LlamaConfig& config, const Block& block, Index layer, Matrix x,
                                Index seq_len, const Hook& hook = {}, const OutputHook& outputs = {}) {
        const char* where = "LlamaModel::block_forward";
        require(seq_len >= 1 && seq_len <= config.max_seq_len, where, "sequence length ", seq_len,
                " is outside 1 .. max_seq_len = ", config.max_seq_len);
        require(x.rows() == config.dim && x.cols() > 0 && x.cols() % seq_len == 0, where, "x is ",
                shape_string(x.rows(), x.cols()), ", expected ", config.dim, " rows and whole sequences of ", seq_len);
        check_window(config, seq_len, where);
        BlockCache scratch;
        return block_forward_cached(b, config, block, layer, std::move(x),
                                    AttentionShape{config.n_heads, config.n_kv_heads, config.head_dim(), seq_len}, hook,
                                    scratch, /*keep_for_backward=*/false, outputs);
    }

    /// block_forward on this model's block `layer`.
    Matrix block_forward(Index layer, Matrix x, Index seq_len, const Hook& hook = {}) const {
        require(layer >= 0 && layer < static_cast<Index>(blocks.size()), "LlamaModel::block_forward", "layer ", layer,
                " of a model with ", blocks.size(), " blocks");
        return block_forward(*backend_, config, blocks[static_cast<std::size_t>(layer)], layer, std::move(x), seq_len,
                             hook);
    }

    /// Mean cross-entropy of next-token prediction; forward included.
    double loss(const std::vector<std::int32_t>& tokens, const std::vector<std::int32_t>& targets, Index seq_len) {
        require(targets.size() == tokens.size(), "LlamaModel::loss", tokens.size(), " tokens but ", targets.size(),
                " targets");
        const Matrix logits = forward(tokens, seq_len);
        cache_.targets = targets;
        const double value = backend_->cross_entropy_forward(logits, targets, cache_.probs);
        // One scalar per step: a diverged run stops here, by name, not steps later as NaN weights.
        require(std::isfinite(value), "LlamaModel::loss", "the loss is ", value,
                " (NaN or Inf in the weights or the logits: a learning rate too high, or a bad checkpoint)");
        return value;
    }

    /// Zeroes (allocating) the gradients of everything that trains.
    void zero_grad() {
        Bk& b = *backend_;
        const bool full = train_embeddings_and_norms;
        auto grad_like = [&](const Matrix& m, bool trains) { return trains ? zeros<T>(b, m.rows(), m.cols()) : Matrix(); };
        d_embed = grad_like(embed, full);
        d_final_norm = grad_like(final_norm, full);
        d_lm_head = grad_like(lm_head, full && !config.tied_embeddings);
        for (auto& block : blocks) {
            block.d_attn_norm = grad_like(block.attn_norm, full);
            block.d_mlp_norm = grad_like(block.mlp_norm, full);
            for (auto& p : block.proj) p.zero_grad(b);
        }
    }

    /// Accumulates dL/d(parameters that train) for the last loss().
    void backward() {
        Bk& b = *backend_;
        require(cache_.probs.cols() > 0, "LlamaModel::backward", "call loss() first");
        for (const Block& block : blocks)
            require(!block.fused(), "LlamaModel::backward", "a block fused for forward only (fuse_products)");
        const bool full = train_embeddings_and_norms;
        const Matrix d_logits = b.cross_entropy_backward(cache_.probs, cache_.targets);  // vocab x T
        Matrix d_normed;
        if (config.tied_embeddings) {
            if (full) b.gemm(Op::none, Op::transpose, T(1), cache_.normed, d_logits, T(1), d_embed);  // dim x vocab
            d_normed = product(b, embed, d_logits);
        } else {
            if (full) b.gemm(Op::none, Op::transpose, T(1), d_logits, cache_.normed, T(1), d_lm_head);
            d_normed = product(b, lm_head, d_logits, Op::transpose);
        }
        Matrix scratch_gain = zeros<T>(b, config.dim, 1);
        Matrix dx = b.rmsnorm_backward(d_normed, cache_.x_final, final_norm, cache_.rstd_final,
                                       full ? d_final_norm : scratch_gain);
        for (std::size_t l = blocks.size(); l-- > 0;) {
            Block& block = blocks[l];
            BlockCache& c = cache_.blocks[l];
            // x = x_mid + Wdown h
            const Matrix d_h = block[ProjectionKind::down].backward(b, c.down_in, dx);
            Matrix d_gate, d_up;
            b.swiglu_backward(d_h, c.gate, c.up, d_gate, d_up);
            Matrix d_mlp_in = block[ProjectionKind::gate].backward(b, c.mlp_in, d_gate);
            b.axpy(T(1), block[ProjectionKind::up].backward(b, c.mlp_in, d_up), d_mlp_in);
            b.axpy(T(1), b.rmsnorm_backward(d_mlp_in, c.x_mid, block.mlp_norm, c.rstd_mlp, full ? block.d_mlp_norm : scratch_gain), dx);
            // x_mid = x_in + Wo o
            const Matrix d_o = block[ProjectionKind::o].backward(b, c.o_in, dx);
            Matrix d_q, d_k, d_v;
            b.attention_backward(d_o, c.q, c.k, c.v, c.probs, cache_.shape, d_q, d_k, d_v);
            const std::vector<double> frequencies = rope_frequencies(config);
            b.rope(d_q, config.n_heads, config.head_dim(), cache_.shape.seq_len, frequencies, -1);
            b.rope(d_k, config.n_kv_heads, config.head_dim(), cache_.shape.seq_len, frequencies, -1);
            Matrix d_attn_in = block[ProjectionKind::q].backward(b, c.attn_in, d_q);
            b.axpy(T(1), block[ProjectionKind::k].backward(b, c.attn_in, d_k), d_attn_in);
            b.axpy(T(1), block[ProjectionKind::v].backward(b, c.attn_in, d_v), d_attn_in);
            b.axpy(T(1), b.rmsnorm_backward(d_attn_in, c.x_in, block.attn_norm, c.rstd_attn, full ? block.d_attn_norm : scratch_gain), dx);
        }
        if (full) b.embedding_backward(d_embed, dx, cache_.tokens);
    }

    /// Every parameter with its Hugging Face name; grad is nullptr when frozen.
    std::vector<ParameterRef<Matrix>> parameters() {
        std::vector<ParameterRef<Matrix>> out;
        auto add = [&](std::string name, Matrix& value, Matrix& grad) {
            out.push_back({std::move(name), &value, grad.rows() * grad.cols() > 0 ? &grad : nullptr});
        };
        add("model.embed_tokens.weight", embed, d_embed);
        for (std::size_t l = 0; l < blocks.size(); ++l) {
            Block& block = blocks[l];
            const std::string prefix = "model.layers." + std::to_string(l) + ".";
            add(prefix + "input_layernorm.weight", block.attn_norm, block.d_attn_norm);
            add(prefix + "post_attention_layernorm.weight", block.mlp_norm, block.d_mlp_norm);
            for (ProjectionKind kind : all_projections) {
                auto& p = block[kind];
                const std::string path = prefix + projection_path(kind);
                if (p.lora) {
                    add(path + ".lora_A", p.lora->A, p.d_A);
                    add(path + ".lora_B", p.lora->B, p.d_B);
                } else {
                    add(path + ".weight", p.weight, p.d_weight);
                }
                if (p.bias.rows() > 0) out.push_back({path + ".bias", &p.bias, nullptr});  // frozen
            }
        }
        add("model.norm.weight", final_norm, d_final_norm);
        if (!config.tied_embeddings) add("lm_head.weight", lm_head, d_lm_head);
        return out;
    }

    /// Full fine-tuning: every dense weight, norm and embedding trains.
    void set_full_finetune(bool on) {
        train_embeddings_and_norms = on;
        for (auto& block : blocks)
            for (auto& p : block.proj) p.train_weight = on && !p.lora;
    }

    Bk& backend() const { return *backend_; }

private:
    Matrix ones(Index rows) const {
        HostMatrix<T> host(rows, 1, T(1));
        return backend_->upload(host);
    }

    /// A sliding window (Mistral; Qwen2 with use_sliding_window) changes the
    /// attention only for sequences longer than it: those are refused, so
    /// every sequence computed is exactly HF's.
    static void check_window(const LlamaConfig& config, Index seq_len, const char* where) {
        require(config.sliding_window == 0 || seq_len <= config.sliding_window, where, "sequences of ", seq_len,
                " tokens exceed the model's sliding_window of ", config.sliding_window,
                " (windowed attention is not implemented; use sequences of at most ", config.sliding_window, ")");
    }

    struct BlockCache {
        Matrix x_in, attn_in, rstd_attn, q, k, v, probs, o_in, x_mid, mlp_in, rstd_mlp, gate, up, down_in;
    };
    struct Cache {
        std::vector<std::int32_t> tokens, targets;
        AttentionShape shape;
        std::vector<BlockCache> blocks;
        Matrix x_final, normed, rstd_final, probs;
    };

    /// The block's forward, keeping in c what backward needs: the one copy of
    /// the block code (forward and block_forward both run it).
    static Matrix block_forward_cached(Bk& b, const LlamaConfig& config, const Block& block, Index layer, Matrix x,
                                       const AttentionShape& shape, const Hook& hook, BlockCache& c,
                                       bool keep_for_backward = true, const OutputHook& outputs = {}) {
        const Index seq_len = shape.seq_len;
        // One projection's output, seen by the output hook before its bias.
        auto finish = [&](ProjectionKind kind, Matrix y) {
            if (outputs) outputs(layer, kind, y);
            block[kind].add_bias(b, y);
            return y;
        };
        auto project = [&](ProjectionKind kind, const Matrix& in) { return finish(kind, block[kind].forward_unbiased(b, in)); };
        if (keep_for_backward) c.x_in = x;  // the residual stream itself: only the backward reads it again
        c.attn_in = b.rmsnorm_forward(x, block.attn_norm, T(config.norm_eps), c.rstd_attn);
        if (hook) hook(layer, LinearInput::attn_in, c.attn_in);
        if (block.fused()) {  // [q; k; v] = [Wq; Wk; Wv] a, then split by rows
            const Matrix y = product(b, block.qkv_weight, c.attn_in);
            const Index q_rows = config.q_dim(), kv_rows = config.kv_dim(), t = y.cols();
            c.q = finish(ProjectionKind::q, b.block(y, 0, 0, q_rows, t));
            c.k = finish(ProjectionKind::k, b.block(y, q_rows, 0, kv_rows, t));
            c.v = finish(ProjectionKind::v, b.block(y, q_rows + kv_rows, 0, kv_rows, t));
        } else {
            c.q = project(ProjectionKind::q, c.attn_in);
            c.k = project(ProjectionKind::k, c.attn_in);
            c.v = project(ProjectionKind::v, c.attn_in);
        }
        const std::vector<double> frequencies = rope_frequencies(config);
        b.rope(c.q, config.n_heads, config.head_dim(), seq_len, frequencies);
        b.rope(c.k, config.n_kv_heads, config.head_dim(), seq_len, frequencies);
        if (keep_for_backward)
            c.o_in = b.attention_forward(c.q, c.k, c.v, shape, c.probs);
        else if constexpr (requires { b.attention_inference(c.q, c.k, c.v, shape); })
            c.o_in = b.attention_inference(c.q, c.k, c.v, shape);  // no seq^2 probabilities kept
        else
            c.o_in = b.attention_forward(c.q, c.k, c.v, shape, c.probs);
        if (hook) hook(layer, LinearInput::o_in, c.o_in);
        b.axpy(T(1), project(ProjectionKind::o, c.o_in), x);
        if (keep_for_backward) c.x_mid = x;
        c.mlp_in = b.rmsnorm_forward(x, block.mlp_norm, T(config.norm_eps), c.rstd_mlp);
        if (hook) hook(layer, LinearInput::mlp_in, c.mlp_in);
        if (block.fused()) {  // [gate; up] = [Wgate; Wup] m
            const Matrix y = product(b, block.gate_up_weight, c.mlp_in);
            const Index h = config.hidden_dim, t = y.cols();
            c.gate = finish(ProjectionKind::gate, b.block(y, 0, 0, h, t));
            c.up = finish(ProjectionKind::up, b.block(y, h, 0, h, t));
        } else {
            c.gate = project(ProjectionKind::gate, c.mlp_in);
            c.up = project(ProjectionKind::up, c.mlp_in);
        }
        c.down_in = b.swiglu_forward(c.gate, c.up);
        if (hook) hook(layer, LinearInput::down_in, c.down_in);
        b.axpy(T(1), project(ProjectionKind::down, c.down_in), x);
        return x;
    }

    /// The weights of `kinds` stacked by rows (moved out of their projections).
    static Matrix stack_rows(Bk& b, Block& block, std::initializer_list<ProjectionKind> kinds) {
        Index rows = 0;
        const Index cols = block[*kinds.begin()].weight.cols();
        for (ProjectionKind kind : kinds) rows += block[kind].weight.rows();
        Matrix stacked = zeros<T>(b, rows, cols);
        Index row = 0;
        for (ProjectionKind kind : kinds) {
            Matrix w = std::move(block[kind].weight);
            block[kind].weight = Matrix();
            b.set_block(stacked, row, 0, w);
            row += w.rows();
        }
        return stacked;
    }

    Bk* backend_;
    Cache cache_;
};

}  // namespace loranull
