#!/usr/bin/env python3
"""A random LLaMA checkpoint in Hugging Face's layout, and calibration token ids,
for benchmarking loranull-build (numpy only; no torch, no transformers).

    make_llama_checkpoint.py OUT_DIR [--dim 768 --layers 12 --heads 12 --kv-heads 4
                             --hidden 2048 --vocab 32000 --tied --dtype bf16 --shards 2]
                             [--calib FILE --samples 64 --seq-len 512]

Weights are N(0, 0.02^2) (o_proj and down_proj scaled by 1/sqrt(2 layers)), norm
gains 1. BF16 is written by rounding float32 to nearest even. With --shards K > 1
the tensors are split into K files with model.safetensors.index.json, as
transformers' save_pretrained does. The calibration file holds one I64 tensor
input_ids [samples, seq_len] of uniform random ids.
"""
import argparse
import json
import os
import struct

import numpy as np


def to_bf16_bytes(a):
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = bits + 0x7FFF + ((bits >> 16) & 1)
    return (rounded >> 16).astype("<u2").tobytes()


def write_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, dtype string, shape, bytes)."""
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"))
    text += " " * ((8 - len(text) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text.encode())
        for _, _, _, data in tensors:
            f.write(data)
    os.replace(path + ".tmp", path)
    return offset


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--max-seq", type=int, default=2048)
    p.add_argument("--tied", action="store_true")
    p.add_argument("--dtype", choices=["f32", "bf16"], default="bf16")
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--calib")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=512)
    a = p.parse_args()
    rng = np.random.default_rng(a.seed)
    os.makedirs(a.out, exist_ok=True)
    hd = a.dim // a.heads
    kv = a.kv_heads * hd
    residual = 0.02 / np.sqrt(2.0 * a.layers)

    def tensor(name, shape, std):
        x = np.ones(shape, np.float32) if std is None else (rng.standard_normal(shape, np.float32) * std)
        if a.dtype == "bf16":
            return (name, "BF16", shape, to_bf16_bytes(x))
        return (name, "F32", shape, x.astype("<f4").tobytes())

    names = [("model.embed_tokens.weight", (a.vocab, a.dim), 0.02)]
    for l in range(a.layers):
        pre = f"model.layers.{l}."
        names += [
            (pre + "input_layernorm.weight", (a.dim,), None),
            (pre + "self_attn.q_proj.weight", (a.dim, a.dim), 0.02),
            (pre + "self_attn.k_proj.weight", (kv, a.dim), 0.02),
            (pre + "self_attn.v_proj.weight", (kv, a.dim), 0.02),
            (pre + "self_attn.o_proj.weight", (a.dim, a.dim), residual),
            (pre + "post_attention_layernorm.weight", (a.dim,), None),
            (pre + "mlp.gate_proj.weight", (a.hidden, a.dim), 0.02),
            (pre + "mlp.up_proj.weight", (a.hidden, a.dim), 0.02),
            (pre + "mlp.down_proj.weight", (a.dim, a.hidden), residual),
        ]
    names.append(("model.norm.weight", (a.dim,), None))
    if not a.tied:
        names.append(("lm_head.weight", (a.vocab, a.dim), 0.02))

    # Contiguous groups of tensors per shard, about equal in size.
    sizes = [int(np.prod(s)) for _, s, _ in names]
    per_shard = sum(sizes) / a.shards
    groups, current, acc = [], [], 0
    for entry, size in zip(names, sizes):
        if current and acc + size > per_shard * (len(groups) + 1) and len(groups) < a.shards - 1:
            groups.append(current)
            current = []
        current.append(entry)
        acc += size
    groups.append(current)
    weight_map, total = {}, 0
    for k, group in enumerate(groups):
        file = "model.safetensors" if a.shards == 1 else f"model-{k + 1:05d}-of-{len(groups):05d}.safetensors"
        total += write_safetensors(os.path.join(a.out, file), [tensor(*e) for e in group], {"format": "pt"})
        for name, _, _ in group:
            weight_map[name] = file
    if a.shards > 1:
        with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": a.dim,
        "intermediate_size": a.hidden, "num_attention_heads": a.heads, "num_hidden_layers": a.layers,
        "num_key_value_heads": a.kv_heads, "vocab_size": a.vocab, "max_position_embeddings": a.max_seq,
        "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": a.tied, "hidden_act": "silu",
        "torch_dtype": "bfloat16" if a.dtype == "bf16" else "float32",
    }
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    params = sum(sizes)
    print(f"wrote {a.out}: {params / 1e6:.1f}M parameters, {len(groups)} file(s), {a.dtype}")
    if a.calib:
        ids = rng.integers(0, a.vocab, size=(a.samples, a.seq_len), dtype=np.int64)
        write_safetensors(a.calib, [("input_ids", "I64", ids.shape, ids.astype("<i8").tobytes())])
        print(f"wrote {a.calib}: input_ids [{a.samples}, {a.seq_len}]")


if __name__ == "__main__":
    main()
