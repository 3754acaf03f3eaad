#!/usr/bin/python3
"""PyTorch (eager, float32) peer of bench/bench_llama.cpp (CPU) and
bench/cuda/bench_llama_cuda.cu (GPU): the same LLaMA configurations, the same
training step (forward, mean cross-entropy, backward, gradient clipping,
AdamW), the same batch; on the CPU, threads set to match (torch.set_num_threads).

  config   dim  layers heads hidden vocab   parameters
  small    128    4      4    344    256      ~0.86 M     batch 8 x 256
  medium   512    6      8   1376   2048      ~21 M       batch 4 x 256
  regimes: full fine-tuning, and LoRA r = 16 (alpha 32) on all seven projections.

Attention is written out (scores, causal mask, softmax, weighted sum) since
torch 1.13 (Debian's) has no scaled_dot_product_attention; RoPE is HF's
rotate-half.

  /usr/bin/python3 bench/pytorch_llama.py [--threads 2] [--steps 5]
  python3 bench/pytorch_llama.py --device cuda [--steps 20]

With --device cuda the model and batch live on the GPU, each timed run is
bracketed by torch.cuda.synchronize(), and float32 matmuls stay true fp32
(TF32 off, PyTorch's default, as loranull's cuBLAS calls). Without a CUDA
device (or a torch built without CUDA) it says so and exits 0.
"""

import argparse
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIGS = {
    "small": dict(dim=128, layers=4, heads=4, hidden=344, vocab=256, batch=8),
    "medium": dict(dim=512, layers=6, heads=8, hidden=1376, vocab=2048, batch=4),
}
SEQ = 256


class Linear(nn.Module):
    """y = W x (+ s B A x when rank > 0; W frozen then)."""

    def __init__(self, n_in, n_out, rank=0, alpha=32.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in) * 0.02, requires_grad=rank == 0)
        self.rank = rank
        if rank:
            self.lora_A = nn.Parameter(torch.empty(rank, n_in).uniform_(-1 / math.sqrt(n_in), 1 / math.sqrt(n_in)))
            self.lora_B = nn.Parameter(torch.zeros(n_out, rank))
            self.scale = alpha / rank

    def forward(self, x):
        y = x @ self.weight.T
        if self.rank:
            y = y + self.scale * ((x @ self.lora_A.T) @ self.lora_B.T)
        return y


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5, trainable=True):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim), requires_grad=trainable)
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(head_dim, seq, theta=10000.0):
    inv = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.arange(seq, dtype=torch.float64)[:, None] * inv[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().float(), angles.sin().float()


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class Block(nn.Module):
    def __init__(self, c, rank, trainable_norms):
        super().__init__()
        d, h = c["dim"], c["hidden"]
        self.heads = c["heads"]
        self.attn_norm = RMSNorm(d, trainable=trainable_norms)
        self.mlp_norm = RMSNorm(d, trainable=trainable_norms)
        self.q, self.k, self.v, self.o = (Linear(d, d, rank) for _ in range(4))
        self.gate, self.up = Linear(d, h, rank), Linear(d, h, rank)
        self.down = Linear(h, d, rank)

    def forward(self, x, cos, sin, mask):
        b, t, d = x.shape
        hd = d // self.heads
        a = self.attn_norm(x)
        q = self.q(a).view(b, t, self.heads, hd).transpose(1, 2)
        k = self.k(a).view(b, t, self.heads, hd).transpose(1, 2)
        v = self.v(a).view(b, t, self.heads, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + mask
        o = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.o(o)
        m = self.mlp_norm(x)
        return x + self.down(F.silu(self.gate(m)) * self.up(m))


class Llama(nn.Module):
    def __init__(self, c, rank):
        super().__init__()
        full = rank == 0
        self.embed = nn.Parameter(torch.randn(c["vocab"], c["dim"]) * 0.02, requires_grad=full)
        self.blocks = nn.ModuleList(Block(c, rank, full) for _ in range(c["layers"]))
        self.norm = RMSNorm(c["dim"], trainable=full)
        self.lm_head = nn.Parameter(torch.randn(c["vocab"], c["dim"]) * 0.02, requires_grad=full)
        cos, sin = rope_tables(c["dim"] // c["heads"], SEQ)
        self.register_buffer("cos", cos)
        self.register_buffer("sin", sin)
        self.register_buffer("mask", torch.full((SEQ, SEQ), float("-inf")).triu(1))

    def forward(self, tokens):
        x = self.embed[tokens]
        for block in self.blocks:
            x = block(x, self.cos, self.sin, self.mask)
        return self.norm(x) @ self.lm_head.T


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(name, rank, steps, generator, device):
    c = CONFIGS[name]
    model = Llama(c, rank).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    tokens = torch.randint(0, c["vocab"], (c["batch"], SEQ), generator=generator).to(device)
    targets = torch.randint(0, c["vocab"], (c["batch"], SEQ), generator=generator).to(device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        logits = model(tokens)
        loss = F.cross_entropy(logits.view(-1, c["vocab"]), targets.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()

    step()  # warm-up
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    seconds = (time.perf_counter() - start) / steps
    trainable = sum(p.numel() for p in params)
    total = sum(p.numel() for p in model.parameters())
    label = f"{name} {'lora-r16' if rank else 'full'}"
    print(f"{label:>16} {total / 1e6:8.2f} M {trainable / 1e6:9.3f} M {seconds * 1e3:10.1f} ms "
          f"{c['batch'] * SEQ / seconds:10.0f} tokens/s", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--only", choices=list(CONFIGS), default=None)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"torch {torch.__version__}: no CUDA device (or no CUDA build): PyTorch CUDA peer skipped")
        return 0
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    if device.type == "cuda":
        print(f"torch {torch.__version__}, {torch.cuda.get_device_name(device)}, float32 "
              f"(TF32 matmul {'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}), seq {SEQ}")
    else:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, seq {SEQ}")
    print(f"{'config':>16} {'params':>10} {'trainable':>11} {'step':>13} {'throughput':>17}")
    for name in CONFIGS:
        if args.only and name != args.only:
            continue
        for rank in (0, 16):
            measure(name, rank, args.steps, generator, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
