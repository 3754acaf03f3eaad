#!/usr/bin/python3
"""PyTorch (eager, float32) peer of loranull-finetune in bench/bench_finetune.sh:
the same training step on the same checkpoint and adapter, in the same sitting.

What the official fine-tuning (train_model_freeze_a.py on Hugging Face's
Trainer, PEFT's LoRA layers) computes for one optimizer step, written out with
torch only (no transformers in Debian):

  - the residual model in float32, every one of the 7 projections of every
    block with its adapter: y = W_res x + s B (A x), A frozen (LoRA-Null v2),
    B trainable, s = lora_alpha / r from adapter_config.json;
  - a batch of B sequences of T tokens, mean cross-entropy of next-token
    prediction, backward, global-norm clipping at 1, AdamW (lr 2e-5).

Prints "name value" lines (the step's seconds, tokens/s, peak memory) for
bench_finetune.sh to read.

  /usr/bin/python3 bench/pytorch_finetune.py MODEL_DIR ADAPTER_DIR [--batch 4] [--seq 512] [--steps 3] [--threads 2]
"""

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_build import load_weights, peak_memory_mib, read_safetensors, rotate_half  # noqa: E402

NAMES = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
         "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


class LoraLinear(nn.Module):
    """PEFT's LoRA layer: W_res x + s B (A x), W_res and A frozen."""

    def __init__(self, weight, a, b, scale):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.lora_A = nn.Parameter(a, requires_grad=False)
        self.lora_B = nn.Parameter(b)
        self.scale = scale

    def forward(self, x):
        return x @ self.weight.T + self.scale * ((x @ self.lora_A.T) @ self.lora_B.T)


class Block(nn.Module):
    def __init__(self, c, w, adapter, scale, l):
        super().__init__()
        p = f"model.layers.{l}."
        self.heads, self.kv_heads = c["num_attention_heads"], c["num_key_value_heads"]
        self.head_dim = c["hidden_size"] // self.heads
        self.eps = c.get("rms_norm_eps", 1e-5)
        self.attn_norm = w[p + "input_layernorm.weight"]
        self.mlp_norm = w[p + "post_attention_layernorm.weight"]
        self.proj = nn.ModuleDict()
        for name in NAMES:
            key = "base_model.model." + p + name
            self.proj[name.replace(".", "_")] = LoraLinear(w[p + name + ".weight"], adapter[key + ".lora_A.weight"],
                                                           adapter[key + ".lora_B.weight"], scale)

    def norm(self, x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * g

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        a = self.norm(x, self.attn_norm)
        q = self.proj["self_attn_q_proj"](a).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.proj["self_attn_k_proj"](a).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.proj["self_attn_v_proj"](a).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        group = self.heads // self.kv_heads
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim) + mask
        o = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, t, -1)
        x = x + self.proj["self_attn_o_proj"](o)
        m = self.norm(x, self.mlp_norm)
        return x + self.proj["mlp_down_proj"](F.silu(self.proj["mlp_gate_proj"](m)) * self.proj["mlp_up_proj"](m))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("adapter")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    c = json.load(open(os.path.join(args.model, "config.json")))
    w = load_weights(args.model)
    adapter = read_safetensors(os.path.join(args.adapter, "adapter_model.safetensors"))
    ac = json.load(open(os.path.join(args.adapter, "adapter_config.json")))
    scale = ac["lora_alpha"] / ac["r"]
    blocks = nn.ModuleList(Block(c, w, adapter, scale, l) for l in range(c["num_hidden_layers"]))
    embed, final_norm = w["model.embed_tokens.weight"], w["model.norm.weight"]
    lm_head = embed if c.get("tie_word_embeddings") else w["lm_head.weight"]
    hd = c["hidden_size"] // c["num_attention_heads"]
    inv = 1.0 / (c.get("rope_theta", 10000.0) ** (torch.arange(0, hd, 2).float() / hd))
    freqs = torch.outer(torch.arange(args.seq).float(), inv)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    mask = torch.full((args.seq, args.seq), float("-inf")).triu(1)
    params = [p for p in blocks.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-5, weight_decay=0.0)
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, c["vocab_size"], (args.batch, args.seq + 1), generator=generator)

    def step():
        optimizer.zero_grad(set_to_none=True)
        x = embed[tokens[:, :-1]]
        for block in blocks:
            x = block(x, cos, sin, mask)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + c.get("rms_norm_eps", 1e-5)) * final_norm
        logits = x @ lm_head.T
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()

    step()  # warm-up: first-touch of every buffer
    best = math.inf
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    print(f"torch {torch.__version__} {torch.get_num_threads()}")
    print(f"trainable {sum(p.numel() for p in params)}")
    print(f"step_seconds {best:.4f}")
    print(f"tokens_per_second {args.batch * args.seq / best:.1f}")
    print(f"peak_mib {peak_memory_mib():.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
