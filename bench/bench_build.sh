#!/bin/sh
# loranull-build on a ~100M-parameter random LLaMA (dim 768, 12 layers, 12 heads,
# 4 kv heads, intermediate 2048, vocab 32000, tied, BF16, 2 shards) with 64 x 512
# calibration tokens: the whole pipeline's time, split into load / embedding /
# forward / covariance / decomposition / writes / assembly, and the peak memory
# (VmHWM). Takes minutes on 2 cores; not run by CI. Results: docs/benchmarks.md.
#
#   [METHODS="lora-null pissa"] [LAUNCH="mpirun -np 2 ..."] bench/bench_build.sh [BUILD_DIR] [WORK_DIR]
#       [extra loranull-build options]
#
# LAUNCH prefixes the command (bench/bench_build_ranks.sh: 1 against 2 MPI ranks).
set -eu
# Eigen's OpenMP threads spin after each product and slow the OpenBLAS/LAPACK
# calls that follow (docs/benchmarks.md, "one trap"): let them sleep.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
build=${1:-build}
work=${2:-/tmp/loranull_bench_build}
shift 2 2>/dev/null || shift $#
python=python3
python3 -c "import numpy" 2>/dev/null || python=/usr/bin/python3   # Debian's python3-numpy
here=$(dirname "$0")
mkdir -p "$work"
if [ ! -f "$work/llama-100m/config.json" ]; then
  "$python" "$here/make_llama_checkpoint.py" "$work/llama-100m" --dim 768 --layers 12 --heads 12 --kv-heads 4 \
    --hidden 2048 --vocab 32000 --tied --dtype bf16 --shards 2 \
    --calib "$work/calib-64x512.safetensors" --samples 64 --seq-len 512
fi
for method in ${METHODS:-lora-null}; do   # e.g. METHODS="lora-null pissa corda-kpm"
  rm -rf "$work/out-$method"
  echo "== $method (rank 128)"
  /usr/bin/time -v ${LAUNCH:-} "$build/tools/loranull-build" --model "$work/llama-100m" \
    --calib "$work/calib-64x512.safetensors" --method "$method" --rank 128 --out "$work/out-$method" "$@" \
    2> "$work/stderr-$method.txt" | tail -4
  grep -E "Elapsed|Maximum resident" "$work/stderr-$method.txt"
done
