#!/usr/bin/python3
"""PyTorch (CPU, float32) peer of bench/bench_linalg.cpp: the same work, done the
way a PyTorch user (and the official LoRA-Null code) would do it.

  Accumulate   C += X X^T with X = n x 2048 float activations, n = 1024, 4096:
                 torch_matmul   C += X @ X.T     (a temporary, then an add)
                 torch_addmm_   C.addmm_(X, X.T) (in place)
               GFLOP/s counts the useful flops of a symmetric rank update, n^2 T,
               as bench_linalg does (a general product executes twice that).
               Peers in bench_linalg: Accumulate/loranull_Covariance_f32acc and
               Accumulate/OpenBLAS_ssyrk.
  NullSpace128 the 128 eigenvectors of smallest eigenvalue of C = X X^T / T,
               X = Q D G (n x 2n, rows scaled geometrically 1 .. 1e-2, random
               rotation Q; same construction as bench_linalg, torch's RNG),
               n = 1024, 2048, 4096:
                 torch_eigh_full        torch.linalg.eigh(C), then V[:, :128]
                 torch_svd_full_ref     torch.linalg.svd(C), then U[:, -128:] (the
                                        official reference's route)
               Peer in bench_linalg: NullSpace128/loranull_null_space.

Each case runs once as a warm-up, then repeats until --min-time seconds have
passed (at most --max-repeats times); the median of the timed runs is printed
(a case slower than --min-time is timed once, its warm-up run counting).

Run with Debian's python (python3-torch lives there, not in a pyenv python):
  /usr/bin/python3 bench/pytorch_linalg.py                  # about a minute
  /usr/bin/python3 bench/pytorch_linalg.py --quick          # one run per case
  build/bench/bench_linalg --benchmark_out=bench_linalg.json --benchmark_out_format=json
  /usr/bin/python3 bench/pytorch_linalg.py --loranull-json bench_linalg.json
With --loranull-json the table also shows loranull's time from that run and the
speed-up of loranull over PyTorch (> 1: loranull is faster).
"""

import argparse
import json
import statistics
import sys
import time

try:
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    sys.exit("pytorch_linalg.py needs PyTorch: apt-get install -y python3-torch, and run /usr/bin/python3")

TOKENS = 2048
NULL_RANK = 128
ACC_SIZES = (1024, 4096)
NULL_SIZES = (1024, 2048, 4096)


def time_case(fn, min_time, max_repeats):
    """Median seconds of fn() over repeats (see the module docstring)."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    if first >= min_time or max_repeats <= 1:
        return first, 1
    times = []
    budget_end = time.perf_counter() + min_time
    while len(times) < max_repeats and (len(times) == 0 or time.perf_counter() < budget_end):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), len(times)


def geometric_scales(n, last=1e-2):
    exponent = torch.arange(n, dtype=torch.float64) / max(n - 1, 1)
    return (last ** exponent).to(torch.float32)


def activations(n, seed):
    g = torch.Generator().manual_seed(seed)
    return geometric_scales(n)[:, None] * torch.randn(n, TOKENS, generator=g, dtype=torch.float32)


def covariance(n, seed):
    """C = Q (D G G^T D / T) Q^T, T = 2n tokens, float32, exactly symmetric."""
    g = torch.Generator().manual_seed(seed)
    tokens = 2 * n
    y = geometric_scales(n)[:, None] * torch.randn(n, tokens, generator=g, dtype=torch.float32)
    c0 = (y @ y.T) / tokens
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float32))
    c = q @ c0 @ q.T
    lower = torch.tril(c)
    return lower + torch.tril(c, -1).T


def loaded_libraries():
    """The BLAS/LAPACK shared objects this process actually mapped."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/" in line}
    except OSError:
        return []
    keys = ("blas", "lapack", "mkl", "gomp", "omp")
    return sorted(p for p in paths if any(k in p.rsplit("/", 1)[-1].lower() for k in keys))


def load_loranull(path):
    """{benchmark run name prefix: real time in ms} from a bench_linalg JSON file."""
    if not path:
        return {}
    with open(path) as f:
        data = json.load(f)
    scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
    out = {}
    for b in data.get("benchmarks", []):
        if b.get("run_type", "iteration") != "iteration":
            continue
        out[b["name"]] = b["real_time"] * scale[b.get("time_unit", "ns")]
    return out


def find_loranull(results, family, n):
    """Time (ms) of `family`/n:<n>/... in the loranull results, or None."""
    prefix = f"{family}/n:{n}/"
    for name, ms in results.items():
        if name.startswith(prefix):
            return ms
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--min-time", type=float, default=3.0, help="seconds of timed repeats per case")
    parser.add_argument("--max-repeats", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="one run per case (a smoke test)")
    parser.add_argument("--filter", default="", help="only cases whose name contains this text (e.g. n:1024)")
    parser.add_argument("--loranull-json", default="", help="bench_linalg --benchmark_out JSON to compare with")
    args = parser.parse_args()
    if args.quick:
        args.min_time, args.max_repeats = 0.0, 1

    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    loranull = load_loranull(args.loranull_json)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, CPU")
    for lib in loaded_libraries():
        print(f"  loaded: {lib}")

    rows = []  # (case, n, seconds, runs, gflops or None, peer family)
    failures = []  # (case, n, message)

    def run(case, n, fn, flops, peer):
        if args.filter and args.filter not in f"{case}/n:{n}":
            return
        try:
            seconds, runs = time_case(fn, args.min_time, args.max_repeats)
        except RuntimeError as error:
            # torch.linalg.eigh in float32 at n = 4096 fails inside LAPACK: the
            # ssyevd workspace query returns 33,579,009 as a float, which rounds
            # down, and the call is refused (info = -8). loranull sizes the
            # workspace itself (backend/cpu/lapack.hpp).
            first_line = str(error).splitlines()[0][:100]
            print(f"  {case}/n:{n}: FAILED ({first_line})", flush=True)
            failures.append((case, n, first_line))
            return
        rows.append((case, n, seconds, runs, flops / seconds * 1e-9 if flops else None, peer))
        print(f"  {case}/n:{n}: {seconds * 1e3:.1f} ms ({runs} run{'s' if runs > 1 else ''})", flush=True)

    print("running ...")
    for n in ACC_SIZES:
        x = activations(n, 1000 + n)
        c = torch.zeros(n, n, dtype=torch.float32)
        useful = float(n) * n * TOKENS

        def matmul_acc():
            c.add_(x @ x.T)

        def addmm_acc():
            c.addmm_(x, x.T)

        run("Accumulate/torch_matmul", n, matmul_acc, useful, "Accumulate/loranull_Covariance_f32acc")
        run("Accumulate/torch_addmm_", n, addmm_acc, useful, "Accumulate/loranull_Covariance_f32acc")
        del x, c

    for n in NULL_SIZES:
        if args.filter and not any(args.filter in f"{case}/n:{n}" for case in
                                   ("NullSpace128/torch_eigh_full", "NullSpace128/torch_svd_full_ref")):
            continue
        cov = covariance(n, 2000 + n)

        def eigh_bottom():
            _, vectors = torch.linalg.eigh(cov)
            return vectors[:, :NULL_RANK].contiguous()

        def svd_bottom():
            u, _, _ = torch.linalg.svd(cov, full_matrices=False)
            return u[:, -NULL_RANK:].contiguous()

        run("NullSpace128/torch_eigh_full", n, eigh_bottom, None, "NullSpace128/loranull_null_space")
        run("NullSpace128/torch_svd_full_ref", n, svd_bottom, None, "NullSpace128/loranull_null_space")
        del cov

    header = f"{'case':<34} {'n':>5} {'torch ms':>10} {'runs':>4} {'GFLOP/s':>8}"
    if loranull:
        header += f"   {'loranull peer':<38} {'ms':>9} {'speed-up':>8}"
    print()
    print(header)
    print("-" * len(header))
    for case, n, seconds, runs, gflops, peer in rows:
        rate = f"{gflops:.1f}" if gflops else "-"
        line = f"{case:<34} {n:>5} {seconds * 1e3:>10.1f} {runs:>4} {rate:>8}"
        if loranull:
            ms = find_loranull(loranull, peer, n)
            if ms is None:
                line += f"   {peer:<38} {'-':>9} {'-':>8}"
            else:
                line += f"   {peer:<38} {ms:>9.1f} {seconds * 1e3 / ms:>7.2f}x"
        print(line)
    for case, n, message in failures:
        print(f"{case:<34} {n:>5} {'FAILED':>10}   {message}")
    print()
    print("GFLOP/s: useful flops n^2 T of a symmetric rank update (bench_linalg's convention).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
