#!/usr/bin/env bash
# Installs what is missing, builds everything (tests, benchmarks, examples, and
# the CUDA targets when nvcc is found) and runs every test with ctest. Without a
# GPU the GPU tests are reported as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
jobs=$(nproc)
# The fuzz corpora replay in the sanitized build below, not here too.
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DLORANULL_FUZZ_REPLAY=OFF
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"
# Without a GPU, ctest lists the GPU cases as "Skipped"; say why in words too.
if [ -x build/tests/cuda/test_cuda_parity ] && ! nvidia-smi -L >/dev/null 2>&1; then
  build/tests/cuda/test_cuda_parity 2>&1 | grep -m1 "no CUDA device" || true
fi

# The sanitized suite (docs/reliability.md): the library's tests and the fuzz
# corpora replayed, under AddressSanitizer + UBSan, any report fatal. Its own
# build folder, without CUDA, the tools (their end-to-end tests above) or the
# examples, -O1 and no debug info: what keeps the whole run inside CI's time.
cmake -S . -B build-sanitize -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE=-O1 -DLORANULL_SANITIZE=ON \
  -DLORANULL_CUDA=OFF -DLORANULL_BUILD_TOOLS=OFF -DLORANULL_BUILD_EXAMPLES=OFF -DLORANULL_BUILD_BENCHMARKS=OFF
cmake --build build-sanitize -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-sanitize --output-on-failure -j "$jobs"
