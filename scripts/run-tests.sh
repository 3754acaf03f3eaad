#!/usr/bin/env bash
# Installs what is missing, builds everything (tests, benchmarks, examples, and
# the CUDA targets when nvcc is found) and runs every test with ctest. Without a
# GPU the GPU tests are reported as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
jobs=$(nproc)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"
# Without a GPU, ctest lists the GPU cases as "Skipped"; say why in words too.
if [ -x build/tests/cuda/test_cuda_parity ] && ! nvidia-smi -L >/dev/null 2>&1; then
  build/tests/cuda/test_cuda_parity 2>&1 | grep -m1 "no CUDA device" || true
fi
