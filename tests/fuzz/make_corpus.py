#!/usr/bin/env python3
"""Writes the seed corpus of the safetensors fuzzer (tests/fuzz/corpus/).

Small files only: valid files of every dtype the reader converts, a
metadata-only file, integer tensors, and a few broken ones (truncated data, a
header length that lies, overlapping tensors, a zero-size tensor, the two
regressions below). Re-run after changing it; the files are committed so the
fuzzer needs no Python. The corpus also holds fuzz_*.safetensors: inputs the
fuzzer found (the smallest one per distinct reader error), kept by hand; this
script leaves them alone.
"""
import json
import os
import struct
import sys

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
os.makedirs(out, exist_ok=True)


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


def write(name, blob):
    with open(os.path.join(out, name), "wb") as f:
        f.write(blob)


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
print("corpus", out, "holds", len(os.listdir(out)), "files", file=sys.stderr)
