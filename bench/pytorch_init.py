#!/usr/bin/python3
"""PyTorch (CPU, float32) peer of bench/bench_lora.cpp: the LoRA-Null
initialisation of one layer the way the official code does it, and the thin path
written in PyTorch for comparison.

  reference_route  U, S, Vh = torch.linalg.svd(C); Ur = U[:, -r:]; P = Ur Ur^T;
                   W P; torch.linalg.svd(W P, full_matrices=False); top r
                   (the official build step, per layer)
  thin_path        torch.linalg.eigh(C) (torch has no index-range eigensolver, so
                   all pairs), U = V[:, :r]; M = W U; torch.linalg.svd(M); factors

Shapes: W 4096 x 4096 and 11008 x 4096, r = 128, C = X X^T / T built as in
bench_lora.cpp (2n tokens, rows scaled 1 .. 1e-2, random rotation).
Threads: torch.set_num_threads(2) (this machine), or --threads.

  /usr/bin/python3 bench/pytorch_init.py            # a few minutes
  /usr/bin/python3 bench/pytorch_init.py --quick    # 1024 x 1024 only
"""

import argparse
import time

import torch


def covariance(n, generator):
    x = torch.randn(n, 2 * n, generator=generator)
    scales = torch.tensor([1e-2 ** (i / (n - 1)) for i in range(n)], dtype=torch.float32)
    x = x * scales[:, None]
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator))
    x = q @ x
    return (x @ x.T) / (2 * n)


def reference_route(w, c, r):
    u, _, _ = torch.linalg.svd(c)
    ur = u[:, -r:]
    p = ur @ ur.T
    wp = w @ p
    uw, sw, vhw = torch.linalg.svd(wp, full_matrices=False)
    b = uw[:, :r] * sw[:r].sqrt()
    a = sw[:r].sqrt()[:, None] * vhw[:r]
    return a, b, w - b @ a


def thin_path(w, c, r):
    _, v = torch.linalg.eigh(c)
    u = v[:, :r]
    m = w @ u
    um, s, qh = torch.linalg.svd(m, full_matrices=False)
    b = um * s.sqrt()
    a = (s.sqrt()[:, None] * qh) @ u.T
    return a, b, w - b @ a


def timed(fn, *args):
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    shapes = [(1024, 1024)] if args.quick else [(4096, 4096), (11008, 4096)]
    r = 128
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, r = {r}")
    print(f"{'shape':>12} {'reference_route s':>18} {'thin_path s':>12}")
    for m, n in shapes:
        c = covariance(n, generator)
        w = torch.randn(m, n, generator=generator) / n ** 0.5
        t_ref = timed(reference_route, w, c, r)
        try:
            thin = f"{timed(thin_path, w, c, r):>12.2f}"
        except RuntimeError:
            # torch.linalg.eigh(float32) fails at n = 4096: LAPACK's ssyevd
            # workspace query rounds down in float (info = -8).
            thin = f"{'FAILED':>12}"
        print(f"{m:>6}x{n:<5} {t_ref:>18.2f} {thin}", flush=True)


if __name__ == "__main__":
    main()
