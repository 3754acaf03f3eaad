#!/bin/sh
# CPU scaling of loranull-build under MPI: the 113M checkpoint of
# bench/bench_build.sh (32 x 512 calibration tokens, LoRA-Null rank 128), one
# process of one thread against `mpirun -np 2` of one thread each, in the same
# run on the same machine; then each part's seconds from report.json (rank 0's
# wall clock, and for 2 ranks the sum over ranks). Minutes on 2 cores; not run
# by CI. Results: docs/benchmarks.md.
#
#   bench/bench_build_ranks.sh [BUILD_DIR] [WORK_DIR]
set -eu
build=${1:-build}
work=${2:-/tmp/loranull_bench_build}
here=$(dirname "$0")
mkdir -p "$work"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
for ranks in 1 2; do
  echo "== $ranks rank(s), 1 thread each"
  if [ "$ranks" = 1 ]; then launch=""; else launch="mpirun -np $ranks --oversubscribe --bind-to none"; fi
  LAUNCH="$launch" METHODS=lora-null ACCUMULATE=fp64 sh "$here/bench_build.sh" "$build" "$work" >"$work/ranks-$ranks.txt" 2>&1 ||
    { cat "$work/ranks-$ranks.txt"; exit 1; }
  cp "$work/out-lora-null-fp64/report.json" "$work/report-ranks-$ranks.json"
  grep -E "Elapsed|Maximum resident" "$work/ranks-$ranks.txt" || true
done
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
r1, r2 = (json.load(open(f"{work}/report-ranks-{k}.json")) for k in (1, 2))
parts = ["total", "load", "embedding", "forward", "covariance", "reduction", "decomposition", "block_writes", "assembly"]
print("| part | 1 rank (s) | 2 ranks, rank 0 (s) | 2 ranks, summed over ranks (s) | speed-up |")
print("|---|---|---|---|---|")
for p in parts:
    a, b = r1["seconds"][p], r2["seconds"][p]
    s = r2["seconds_all_ranks"][p]
    print(f"| {p} | {a:.1f} | {b:.1f} | {s:.1f} | {a / b if b > 0 else float('nan'):.2f} |")
print(f"peak memory (VmHWM, rank 0): {r1['peak_memory_bytes'] / 2**20:.0f} MiB vs {r2['peak_memory_bytes'] / 2**20:.0f} MiB")
PY
