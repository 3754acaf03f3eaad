#!/usr/bin/python3
"""The official LoRA-Null build route in PyTorch (eager, float32), the peer of
`loranull-build` in bench/bench_build.sh: the same checkpoint, the same
calibration tokens, the same rank, on the same CPU in the same sitting.

What the official code (LoRA-Null's build scripts, on CorDA's calibration
code) does, step by step:

  1. the whole model in float32, a forward hook on every one of the 7
     projections of every block (nn.Linear modules);
  2. one calibration sequence at a time through the model; each hook takes its
     input x (tokens x in), x = x / |max x| (the signed maximum's absolute
     value), and cov += x^T x / 256: 7 covariances a block, though q/k/v and
     gate/up read the same input;
  3. per projection: the full SVD of cov, U_null = its last r left vectors,
     W' = W U_null U_null^T (the n x n projector applied), the full SVD of W',
     B = U_r S_r^1/2, A = S_r^1/2 V_r^T, W_res = W - B A.

Prints the seconds of each part (forward with hooks, decompositions), the
whole, and the peak memory (VmHWM), one "name value" per line for
bench_build.sh to read.

  /usr/bin/python3 bench/pytorch_build.py MODEL_DIR CALIB.safetensors [--rank 128] [--threads 2]
"""

import argparse
import json
import math
import os
import struct
import time

import numpy as np
import torch
import torch.nn as nn


def read_safetensors(path):
    """{name: float32 tensor} of a safetensors file (F32 or BF16), and I32/I64 as int64."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = data[start:end]
        if info["dtype"] == "BF16":
            a = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] == "F32":
            a = np.frombuffer(raw, dtype=np.float32)
        elif info["dtype"] in ("I32", "I64"):
            a = np.frombuffer(raw, dtype=np.int32 if info["dtype"] == "I32" else np.int64).astype(np.int64)
        else:
            raise SystemExit(f"{path}: dtype {info['dtype']} not handled")
        out[name] = torch.from_numpy(a.reshape(info["shape"]).copy())
    return out


def load_weights(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
    weights = {}
    for f in files:
        weights.update(read_safetensors(os.path.join(model_dir, f)))
    return weights


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Block(nn.Module):
    def __init__(self, c, w, l):
        super().__init__()
        p = f"model.layers.{l}."
        self.heads, self.kv_heads = c["num_attention_heads"], c["num_key_value_heads"]
        self.head_dim = c["hidden_size"] // self.heads
        self.eps = c.get("rms_norm_eps", 1e-5)
        self.attn_norm = w[p + "input_layernorm.weight"]
        self.mlp_norm = w[p + "post_attention_layernorm.weight"]
        self.proj = nn.ModuleDict()
        for name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                     "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"):
            weight = w[p + name + ".weight"]
            linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
            linear.weight.data = weight
            linear.weight.requires_grad_(False)
            self.proj[name.replace(".", "_")] = linear

    def norm(self, x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * g

    def forward(self, x, cos, sin, mask):
        t = x.shape[0]
        a = self.norm(x, self.attn_norm)
        q = self.proj["self_attn_q_proj"](a).view(t, self.heads, self.head_dim).transpose(0, 1)
        k = self.proj["self_attn_k_proj"](a).view(t, self.kv_heads, self.head_dim).transpose(0, 1)
        v = self.proj["self_attn_v_proj"](a).view(t, self.kv_heads, self.head_dim).transpose(0, 1)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        group = self.heads // self.kv_heads
        k, v = k.repeat_interleave(group, dim=0), v.repeat_interleave(group, dim=0)
        scores = (q @ k.transpose(1, 2)) / math.sqrt(self.head_dim) + mask
        o = (torch.softmax(scores, dim=-1) @ v).transpose(0, 1).reshape(t, -1)
        x = x + self.proj["self_attn_o_proj"](o)
        m = self.norm(x, self.mlp_norm)
        h = torch.nn.functional.silu(self.proj["mlp_gate_proj"](m)) * self.proj["mlp_up_proj"](m)
        return x + self.proj["mlp_down_proj"](h)


def peak_memory_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return -1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("calib")
    ap.add_argument("--rank", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    start = time.perf_counter()

    c = json.load(open(os.path.join(args.model, "config.json")))
    w = load_weights(args.model)
    tokens = read_safetensors(args.calib)["input_ids"]
    blocks = [Block(c, w, l) for l in range(c["num_hidden_layers"])]
    embed = w["model.embed_tokens.weight"]
    load_seconds = time.perf_counter() - start

    # 1-2. Hooks on every projection: x / |max x|, cov += x^T x / 256.
    covariances = {}

    def hook(name):
        def accumulate(module, inputs, output):
            x = inputs[0].detach().float()
            x = x / x.max().abs()
            cov = x.T @ x / 256
            covariances[name] = covariances[name] + cov if name in covariances else cov
        return accumulate

    for l, block in enumerate(blocks):
        for name, linear in block.proj.items():
            linear.register_forward_hook(hook((l, name)))
    seq = tokens.shape[1]
    head_dim = c["hidden_size"] // c["num_attention_heads"]
    theta = c.get("rope_theta", 10000.0)
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    angles = torch.outer(torch.arange(seq, dtype=torch.float64), inv)
    angles = torch.cat((angles, angles), dim=-1)
    cos, sin = angles.cos().float(), angles.sin().float()
    mask = torch.full((seq, seq), float("-inf")).triu(1)
    t = time.perf_counter()
    for s in range(tokens.shape[0]):
        x = embed[tokens[s]]
        for block in blocks:
            x = block(x, cos, sin, mask)
    forward_seconds = time.perf_counter() - t

    # 3. Per projection: full SVD of C, W U U^T, full SVD of that.
    t = time.perf_counter()
    r = args.rank
    for (l, name), cov in covariances.items():
        linear = blocks[l].proj[name]
        weight = linear.weight.data
        u, _, _ = torch.linalg.svd(cov)
        null = u[:, -r:]
        projected = weight @ null @ null.T
        uw, sw, vw = torch.linalg.svd(projected, full_matrices=False)
        root = sw[:r].sqrt()
        b = uw[:, :r] * root
        a = root[:, None] * vw[:r]
        linear.weight.data = weight - b @ a
    decomposition_seconds = time.perf_counter() - t
    total = time.perf_counter() - start
    print(f"load {load_seconds:.2f}")
    print(f"forward_and_hooks {forward_seconds:.2f}")
    print(f"decomposition {decomposition_seconds:.2f}")
    print(f"total {total:.2f}")
    print(f"peak_mib {peak_memory_mib():.0f}")


if __name__ == "__main__":
    main()
