#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/).

Every seed is small. Inputs of several files hold them separated by the line
"--8<--" (fuzz_input.hpp). The corpora also hold inputs the fuzzer found
(fuzz_*, regression_*: the smallest one per distinct error, kept by hand);
this script overwrites only its own files. Re-run after changing it; the files
are committed so the fuzzers need no Python.

safetensors:  valid files of every dtype the reader converts, a
metadata-only file, integer tensors, and a few broken ones (truncated data, a
header length that lies, overlapping tensors, a zero-size tensor, the two
regressions below).
"""
import json
import os
import struct
import sys

corpus = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
out = os.path.join(corpus, "safetensors")
os.makedirs(out, exist_ok=True)
SEP = b"\n--8<--\n"


def safetensors(tensors, metadata=None, align=True):
    """tensors: list of (name, dtype, shape, raw bytes)."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    if align:
        text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


def f32(values):
    return struct.pack("<%df" % len(values), *values)


def write(name, blob, target="safetensors"):
    folder = os.path.join(corpus, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(blob if isinstance(blob, bytes) else blob.encode())


write("valid_f32.safetensors",
      safetensors([("layer.weight", "F32", [2, 3], f32([1, -2, 3.5, 0, 1e-3, -7]))], {"format": "pt"}))
write("valid_f64_vector.safetensors",
      safetensors([("v", "F64", [3], struct.pack("<3d", 1.0, float("inf"), -0.5))]))
write("valid_f16.safetensors",
      safetensors([("h", "F16", [2, 2], struct.pack("<4H", 0x3C00, 0x8001, 0x7C00, 0x7E00))]))
write("valid_bf16.safetensors",
      safetensors([("b", "BF16", [3, 1], struct.pack("<3H", 0x3F80, 0xC000, 0x0001))]))
write("valid_integers.safetensors",
      safetensors([("i32", "I32", [2, 2], struct.pack("<4i", 1, -2, 3, 2**31 - 1)),
                   ("i64", "I64", [1], struct.pack("<q", -2**63)),
                   ("u8", "U8", [2], b"\x01\x02")]))
write("metadata_only.safetensors", safetensors([], {"method": "lora-null", "rank": "8"}))
write("mixed_shapes.safetensors",
      safetensors([("empty", "F32", [0, 4], b""), ("cube", "F32", [1, 2, 1], f32([1, 2])),
                   ("scalar", "F32", [], f32([5])), ("row", "BF16", [1, 2], struct.pack("<2H", 0x4000, 0x4040))]))
good = safetensors([("t", "F32", [2, 2], f32([1, 2, 3, 4]))])
write("truncated_data.safetensors", good[:-5])
write("header_length_lies.safetensors", struct.pack("<Q", 4096) + good[8:])
write("overlap.safetensors",
      safetensors([("a", "F32", [2], f32([1, 2])), ("b", "F32", [2], f32([3, 4]))]).replace(b"[8,16]", b"[4,12]"))
# Regressions found by fuzzing (both fixed in io/safetensors.hpp):
# an empty tensor with a huge other axis made read_matrix loop 2^62 times;
# sizes whose product overflows int64 before a zero made element_count() UB.
def raw(name, header):
    h = header.encode()
    write(name, struct.pack("<Q", len(h)) + h)


raw("regression_rows_huge_cols_zero.safetensors",
    '{"t":{"dtype":"F32","shape":[4611686018427387904,0],"data_offsets":[0,0]}}')
raw("shape_overflows.safetensors",
    '{"t":{"dtype":"F64","shape":[4294967296,4294967296,16],"data_offsets":[0,0]}}')
raw("regression_element_count_overflow.safetensors",
    '{"t":{"dtype":"I32","shape":[3037000500,3037000500,0],"data_offsets":[0,0]}}')

# --- hf_checkpoint: config.json --8<-- index (empty: single file) --8<-- weights
def llama_config(**overrides):
    c = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4, "intermediate_size": 6,
         "num_attention_heads": 2, "num_key_value_heads": 1, "num_hidden_layers": 1, "vocab_size": 8,
         "max_position_embeddings": 16, "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "hidden_act": "silu",
         "tie_word_embeddings": False}
    c.update(overrides)
    return {k: v for k, v in c.items() if v is not None}


def llama_tensors(c, dtype="F32"):
    dim, hidden, vocab = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    head = c.get("head_dim", dim // c["num_attention_heads"])
    q, kv = c["num_attention_heads"] * head, c.get("num_key_value_heads", c["num_attention_heads"]) * head
    shapes = [("model.embed_tokens.weight", [vocab, dim])]
    for l in range(c["num_hidden_layers"]):
        p = "model.layers.%d." % l
        shapes += [(p + "input_layernorm.weight", [dim]), (p + "post_attention_layernorm.weight", [dim]),
                   (p + "self_attn.q_proj.weight", [q, dim]), (p + "self_attn.k_proj.weight", [kv, dim]),
                   (p + "self_attn.v_proj.weight", [kv, dim]), (p + "self_attn.o_proj.weight", [dim, q]),
                   (p + "mlp.gate_proj.weight", [hidden, dim]), (p + "mlp.up_proj.weight", [hidden, dim]),
                   (p + "mlp.down_proj.weight", [dim, hidden])]
        if c.get("model_type") == "qwen2":
            shapes += [(p + "self_attn.q_proj.bias", [q]), (p + "self_attn.k_proj.bias", [kv]),
                       (p + "self_attn.v_proj.bias", [kv])]
    shapes.append(("model.norm.weight", [dim]))
    if not c.get("tie_word_embeddings"):
        shapes.append(("lm_head.weight", [vocab, dim]))
    out = []
    for k, (name, shape) in enumerate(shapes):
        n = 1
        for s in shape:
            n *= s
        values = [((k * 7 + i * 3) % 11 - 5) / 8.0 for i in range(n)]
        raw = f32(values) if dtype == "F32" else struct.pack("<%dH" % n, *[struct.unpack("<I", f32([v]))[0] >> 16 for v in values])
        out.append((name, dtype, shape, raw))
    return out


def checkpoint(config, tensors, index=None):
    return json.dumps(config).encode() + SEP + (json.dumps(index).encode() if index else b"") + SEP + safetensors(tensors)


c = llama_config()
write("llama_f32", checkpoint(c, llama_tensors(c)), "hf_checkpoint")
write("llama_bf16", checkpoint(c, llama_tensors(c, "BF16")), "hf_checkpoint")
tied = llama_config(tie_word_embeddings=True, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                            "high_freq_factor": 4.0, "original_max_position_embeddings": 8})
write("llama3_tied_rope", checkpoint(tied, llama_tensors(tied)), "hf_checkpoint")
qwen = llama_config(model_type="qwen2", architectures=["Qwen2ForCausalLM"], use_sliding_window=False, sliding_window=16)
write("qwen2_biases", checkpoint(qwen, llama_tensors(qwen)), "hf_checkpoint")
mistral = llama_config(model_type="mistral", sliding_window=None, head_dim=4)
write("mistral_head_dim", checkpoint(mistral, llama_tensors(mistral)), "hf_checkpoint")
shard = "model-00001-of-00001.safetensors"
index = {"metadata": {"total_size": 0}, "weight_map": {name: shard for name, _, _, _ in llama_tensors(c)}}
write("sharded", checkpoint(c, llama_tensors(c), index), "hf_checkpoint")
write("missing_tensor", checkpoint(c, llama_tensors(c)[:-2]), "hf_checkpoint")
write("wrong_shape", checkpoint(llama_config(hidden_size=8), llama_tensors(c)), "hf_checkpoint")
write("many_layers", checkpoint(llama_config(num_hidden_layers=1 << 40), llama_tensors(c)), "hf_checkpoint")
write("huge_sizes", checkpoint(llama_config(hidden_size=1 << 31, intermediate_size=1 << 40, vocab_size=1 << 40,
                                            num_attention_heads=1 << 20, num_key_value_heads=1 << 20),
                               llama_tensors(c)), "hf_checkpoint")
write("index_elsewhere", checkpoint(c, llama_tensors(c), {"weight_map": {"model.norm.weight": "../x.safetensors"}}),
      "hf_checkpoint")

# --- tokenizer_json: tokenizer.json --8<-- tokenizer_config.json (empty: none)
def byte_chars():
    """GPT-2's byte -> character table."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


BYTES = byte_chars()


def bl(text):
    return "".join(BYTES[b] for b in text.encode())


LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                  r"\s*[\r\n]+|\s+(?!\S)|\s+")


def added(id_, content, special=True):
    return {"id": id_, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": not special, "special": special}


def byte_level_tokenizer(merges, normalizer=None, bos=True, ignore_merges=True):
    vocab = {BYTES[b]: b for b in range(256)}
    for a, b in merges:
        vocab.setdefault(bl(a + b), len(vocab))
    template = {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                                                         {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [], "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [len(vocab)],
                                                                     "tokens": ["<|begin_of_text|>"]}}}
    return {"version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [added(len(vocab), "<|begin_of_text|>"), added(len(vocab) + 1, "<|end_of_text|>")],
            "normalizer": normalizer,
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
            "post_processor": template if bos else {"type": "ByteLevel", "add_prefix_space": False,
                                                    "trim_offsets": False, "use_regex": False},
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": ignore_merges, "vocab": vocab, "merges": [bl(a) + " " + bl(b) for a, b in merges]}}


def llama2_tokenizer(metaspace=False):
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = 3 + b
    for piece in ["\u2581", "a", "b", "\u2581a", "ab", "\u2581ab"]:
        vocab[piece] = len(vocab)
    t = {"version": "1.0", "truncation": None, "padding": None,
         "added_tokens": [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")],
         "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
         "pre_tokenizer": None,
         "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                                                     {"Sequence": {"id": "A", "type_id": 0}}],
                            "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
         "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                                                      {"type": "ByteFallback"}, {"type": "Fuse"},
                                                      {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
         "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                   "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "vocab": vocab,
                   "merges": ["\u2581 a", "a b", "\u2581a b"]}}
    if metaspace:
        t["normalizer"] = None
        t["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False}
    return t


MERGES = [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), (" ", "w"), ("o", "r"), (" w", "or"), ("l", "d"),
          (" wor", "ld"), ("1", "2"), ("12", "3"), ("\n", "\n")]


def tokenizer_input(tokenizer, config=None):
    return json.dumps(tokenizer, ensure_ascii=False).encode() + (SEP + json.dumps(config).encode() if config else b"")


write("llama3", tokenizer_input(byte_level_tokenizer(MERGES)), "tokenizer_json")
write("llama3_config", tokenizer_input(byte_level_tokenizer(MERGES), {"add_bos_token": False, "bos_token": "<|begin_of_text|>",
                                                                      "eos_token": "<|end_of_text|>"}), "tokenizer_json")
write("qwen2_nfc", tokenizer_input(byte_level_tokenizer(MERGES, {"type": "NFC"}, bos=False, ignore_merges=False)),
      "tokenizer_json")
write("llama2_legacy", tokenizer_input(llama2_tokenizer()), "tokenizer_json")
write("llama2_metaspace", tokenizer_input(llama2_tokenizer(True), {"add_bos_token": True, "add_eos_token": True,
                                                                   "bos_token": "<s>", "eos_token": "</s>"}), "tokenizer_json")
write("not_bpe", tokenizer_input({"model": {"type": "Unigram", "vocab": [["a", 0.0]]}}), "tokenizer_json")

# --- tokenize: one byte choosing the tokenizer (0 LLaMA 3, 1 Qwen2, 2 LLaMA 2, 3 Metaspace), then text
texts = [b"hello world", b"  12345 hello\n\n\tworld's", "h\u00e9llo \u4e2d \U0001F642 e\u0301".encode(),
         b"<|begin_of_text|>hello<|end_of_text|> <|eot_id|>", b"<s>ab </s> \xe2\x96\x81ab", b"\xff\xfe not utf-8",
         b"\xed\xa0\x80 surrogate", b"", b"     ", b"\r\n\r\n x"]
for which in range(4):
    for k, text in enumerate(texts):
        write("t%d_%d" % (which, k), bytes([which]) + text, "tokenize")

# --- peft_adapter: adapter_config.json --8<-- adapter_model.safetensors, for the
# model of fuzz_peft_adapter.cpp (hidden 8, 2 layers, 2 heads, kv 2, intermediate 12)
def adapter(modules, r=2, **config):
    c = {"peft_type": "LORA", "r": r, "lora_alpha": 4, "target_modules": ["q_proj", "down_proj"], "bias": "none",
         "use_rslora": False, "use_dora": False, "fan_in_fan_out": False, "modules_to_save": None}
    c.update(config)
    tensors = []
    for path, (m, n) in modules:
        tensors.append(("base_model.model." + path + ".lora_A.weight", "F32", [r, n], f32([0.25] * (r * n))))
        tensors.append(("base_model.model." + path + ".lora_B.weight", "F32", [m, r], f32([-0.5] * (m * r))))
    return json.dumps(c).encode() + SEP + safetensors(tensors)


qd = [("model.layers.0.self_attn.q_proj", (8, 8)), ("model.layers.1.mlp.down_proj", (8, 12))]
write("q_down", adapter(qd), "peft_adapter")
write("rslora_pattern", adapter(qd, r=1, use_rslora=True, alpha_pattern={"q_proj": 16, "layers\\.1\\..*": 2}), "peft_adapter")
write("all_projections", adapter([("model.layers.0.self_attn.k_proj", (8, 8)), ("model.layers.0.self_attn.v_proj", (8, 8)),
                                  ("model.layers.0.self_attn.o_proj", (8, 8)), ("model.layers.0.mlp.gate_proj", (12, 8)),
                                  ("model.layers.0.mlp.up_proj", (12, 8))]), "peft_adapter")
write("wrong_shape", adapter([("model.layers.0.mlp.gate_proj", (8, 8))]), "peft_adapter")
write("not_a_module", adapter([("model.layers.7.self_attn.q_proj", (8, 8))]), "peft_adapter")
write("huge_alpha", adapter(qd, lora_alpha=1e308), "peft_adapter")
write("dora", adapter(qd, use_dora=True), "peft_adapter")

# --- covariance: a loranull covariance file (io/covariance_file.hpp)
def covariance(n, values, dtype="F64", **meta):
    m = {"format": "loranull.covariance/1", "dim": str(n), "tokens": "5", "samples": "2", "normalisation": "plain",
         "reference_divisor": "256", "accumulation": "double" if dtype == "F64" else "float", "data_id": "seed"}
    m.update(meta)
    raw = struct.pack("<%dd" % len(values), *values) if dtype == "F64" else f32(values)
    return safetensors([("covariance", dtype, [n, n], raw)], m)


write("plain_f64", covariance(2, [2.0, 0.5, 0.5, 1.0]), "covariance")
write("reference_f32", covariance(3, [1, 0, 0, 0, 2, 0, 0, 0, 3], "F32", normalisation="reference",
                                  reference_divisor="2.5"), "covariance")
write("empty", covariance(1, [0.0], tokens="0", samples="0"), "covariance")
write("nan", covariance(2, [float("nan"), 0, 0, 1]), "covariance")
write("zero_divisor", covariance(2, [1, 0, 0, 1], normalisation="reference", reference_divisor="0"), "covariance")
write("dim_lies", covariance(2, [1, 0, 0, 1], dim="3"), "covariance")

# --- command_line: one byte choosing the tool (0 init, 1 build, 2 eval, 3 tokenize), then NUL-separated arguments
def argv(tool, *args):
    return bytes([tool]) + b"\0".join(a.encode() for a in args)


write("init", argv(0, "--weights", "w.safetensors", "--activations", "x.safetensors", "--method", "lora-null",
                   "--rank", "4", "--alpha", "8", "--seed", "1", "--out", "o.safetensors"), "command_line")
write("init_covariance", argv(0, "--weights=w", "--covariance=c", "--method=corda-kpm", "--rank=2", "--out=o"), "command_line")
write("build", argv(1, "--model", "m", "--calib", "ids.safetensors", "--method", "lora-null-v2", "--rank", "8",
                    "--out", "out", "--samples", "4", "--seq-len", "16", "--batch", "2", "--layers", "0,2-3",
                    "--normalisation", "reference", "--dtype", "bf16", "--export", "peft", "--device", "cpu",
                    "--save-covariances", "--keep-blocks", "--hidden-on-host", "--stop-after-blocks", "1"), "command_line")
write("build_text", argv(1, "--model", "m", "--calib-text", "t.jsonl", "--format", "jsonl", "--text-field", "body",
                         "--method", "pissa", "--rank", "2", "--out", "o", "--alpha", "0.5", "--allow-rank-deficient"),
      "command_line")
write("eval", argv(2, "--model", "m", "--adapter", "a", "--calib", "ids", "--samples", "2", "--seq-len", "2",
                   "--batch", "1", "--logits-out", "l.safetensors"), "command_line")
write("eval_text", argv(2, "--model", "m", "--calib-text", "t.txt", "--format", "lines", "--seed", "7"), "command_line")
write("tokenize", argv(3, "--model", "m", "--format", "jsonl", "--field", "text", "--no-bos"), "command_line")
write("bad", argv(1, "--rank", "-3", "--rank", "x", "--alpha=", "--unknown", "stray", "--seed", "99999999999999999999999"),
      "command_line")

for target in sorted(os.listdir(corpus)):
    print("corpus", target, "holds", len(os.listdir(os.path.join(corpus, target))), "files", file=sys.stderr)
