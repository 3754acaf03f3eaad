#!/usr/bin/python3
"""An independent oracle for loranull-init: every method recomputed in numpy
from the same files, the way the papers' PyTorch code does it (full
decompositions, no shortcuts), and compared with the tool's output.

  loranull_init_vs_numpy.py PATH/TO/loranull-init WORKDIR

Checks, for two layers of different shapes (F32 files, computations in float64):
  every method     W_res + s B A = W
  pissa / milora   s B A = the top / bottom R singular triplets' product of W
  pissa-fast       ||W - s B A||_2 within the randomized SVD's stated bound
  lora-null        s B A = W P with P the projector on the R eigenvectors of
                   C = X^T X / tokens with the smallest |eigenvalue| (numpy.linalg.eigh),
                   computed the reference's way: the full SVD of W P, top R
  corda-kpm/-ipm   s B A = the last / first R triplets of W C_f times C_f^-1,
                   with the damping loop of SPEC.md section 5
  lora             B = 0, |A| <= 1/sqrt(n), W_res = W
Exit status 0 when every check holds; each failure is printed.
"""

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype=np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def read_safetensors(path):
    raw = Path(path).read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    metadata = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", (name, info["dtype"])
        begin, end = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + length + begin:8 + length + end], dtype="<f4").reshape(info["shape"]).astype(np.float64)
    return out, metadata


def relative(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


def corda_product(w, c, rank, which):
    n = c.shape[0]
    mean_diagonal = np.trace(c) / n
    damping = 0.01
    while True:
        c_f = c + damping * mean_diagonal * np.eye(n)
        c_inv = np.linalg.inv(c_f)
        if np.linalg.norm(c_f @ c_inv - np.eye(n)) < 0.05:
            break
        damping *= 2
    u, s, vt = np.linalg.svd(w @ c_f, full_matrices=False)
    v_hat = (vt @ c_inv)  # rows: V^T C_f^-1
    keep = slice(0, rank) if which == "ipm" else slice(len(s) - rank, len(s))
    return u[:, keep] @ np.diag(s[keep]) @ v_hat[keep]


def main():
    tool, work = sys.argv[1], Path(sys.argv[2])
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(233)
    layers = {"model.layers.0.self_attn.q_proj": (24, 32), "model.layers.0.mlp.down_proj": (32, 40)}
    weights, activations = {}, {}
    for name, (m, n) in layers.items():
        weights[name + ".weight"] = rng.standard_normal((m, n)) / np.sqrt(n)
        # Anisotropic activations: a random rotation of rows scaled over 3 decades.
        q, _ = np.linalg.qr(rng.standard_normal((n, n)))
        scales = 10.0 ** (-3.0 * np.arange(n) / (n - 1))
        activations[name] = (q @ (scales[:, None] * rng.standard_normal((n, 4 * n)))).T  # [tokens, n]
    write_safetensors(work / "W.safetensors", weights)
    write_safetensors(work / "X.safetensors", activations)

    rank, alpha = 5, 10.0
    scale = alpha / rank
    failures = []

    def check(condition, message):
        if not condition:
            failures.append(message)

    for method in ["lora", "pissa", "pissa-fast", "milora", "corda-kpm", "corda-ipm", "lora-null"]:
        out = work / f"out-{method}.safetensors"
        result = subprocess.run([tool, "--weights", str(work / "W.safetensors"), "--activations",
                                 str(work / "X.safetensors"), "--method", method, "--rank", str(rank),
                                 "--alpha", str(alpha), "--seed", "1", "--out", str(out)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            failures.append(f"{method}: exit {result.returncode}: {result.stderr.strip()}")
            continue
        tensors, _ = read_safetensors(out)
        for name, (m, n) in layers.items():
            w = weights[name + ".weight"].astype(np.float32).astype(np.float64)
            x = activations[name].astype(np.float32).astype(np.float64)
            a, b, w_res = tensors[name + ".lora_A.weight"], tensors[name + ".lora_B.weight"], tensors[name + ".weight"]
            where = f"{method} {name}"
            check(a.shape == (rank, n) and b.shape == (m, rank) and w_res.shape == (m, n), f"{where}: shapes")
            adapter = scale * b @ a
            check(relative(w_res + adapter, w) < 1e-5, f"{where}: W_res + s B A != W ({relative(w_res + adapter, w):.2e})")
            u, s, vt = np.linalg.svd(w, full_matrices=False)
            c = x.T @ x / x.shape[0]
            if method == "pissa":
                expected = u[:, :rank] @ np.diag(s[:rank]) @ vt[:rank]
                check(relative(adapter, expected) < 1e-5, f"{where}: not the top-{rank} part ({relative(adapter, expected):.2e})")
            elif method == "pissa-fast":
                # Approximate by design: Halko-Martinsson-Tropp's bound with
                # q = 4 power iterations and p = 10 (docs/math.md section 3).
                p_over, q = 10, 4
                bound = (1 + (1 + 11 * np.sqrt((rank + p_over) * min(m, n))) ** (1 / (2 * q + 1))) * s[rank]
                error = np.linalg.norm(w - adapter, 2)
                check(error <= bound, f"{where}: ||W - s B A||_2 = {error:.3e} above the HMT bound {bound:.3e}")
                top = np.linalg.svd(adapter, compute_uv=False)[:rank]
                check(np.all(top <= s[:rank] * (1 + 1e-5)), f"{where}: singular values above W's")
            elif method == "milora":
                expected = u[:, -rank:] @ np.diag(s[-rank:]) @ vt[-rank:]
                check(relative(adapter, expected) < 1e-4, f"{where}: not the bottom-{rank} part ({relative(adapter, expected):.2e})")
            elif method == "lora-null":
                values, vectors = np.linalg.eigh(c)
                order = np.argsort(np.abs(values))[:rank]
                p = vectors[:, order] @ vectors[:, order].T
                wu, ws, wvt = np.linalg.svd(w @ p, full_matrices=False)   # the reference's route
                expected = wu[:, :rank] @ np.diag(ws[:rank]) @ wvt[:rank]
                check(relative(adapter, expected) < 1e-4, f"{where}: not W P ({relative(adapter, expected):.2e})")
                check(np.linalg.norm(a @ (np.eye(n) - p)) < 1e-4 * np.linalg.norm(a), f"{where}: rows of A leave span(U_null)")
            elif method.startswith("corda"):
                expected = corda_product(w, c, rank, method.split("-")[1])
                check(relative(adapter, expected) < 1e-4, f"{where}: not CorDA's part ({relative(adapter, expected):.2e})")
            elif method == "lora":
                check(np.all(b == 0) and np.abs(a).max() <= 1 / np.sqrt(n) and relative(w_res, w) == 0, f"{where}: not plain LoRA")
    for failure in failures:
        print("FAILED:", failure)
    checked = 7 * len(layers)
    print(f"{checked - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
