#!/usr/bin/env bash
# Fuzzes the safetensors reader with libFuzzer + AddressSanitizer + UBSan.
#
#   scripts/run-fuzzer.sh [SECONDS] [extra libFuzzer flags...]
#
# Configures build-fuzz/ with clang++ (LORANULL_FUZZ=ON), builds only the
# fuzz_safetensors target, and runs it for SECONDS (default 180) on a working
# copy of the seed corpus tests/fuzz/corpus/ (new inputs go to
# build-fuzz/corpus, never into the source tree; crashes, leaks and timeouts are
# written to build-fuzz/artifacts/). One job and one worker, niced: the build
# machines are shared. Environment: JOBS (build parallelism, default 1),
# BUILD_DIR (default build-fuzz). The dictionary tests/fuzz/safetensors.dict
# (the header's keys, dtypes and overflow-prone sizes) guides the mutations.
#
# A reproducer is replayed with: build-fuzz/tests/fuzz/fuzz_safetensors FILE
# To keep an interesting new input as a seed, copy it (small, < 2 KB) into
# tests/fuzz/corpus/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${1:-180}
shift || true
build=${BUILD_DIR:-build-fuzz}
jobs=${JOBS:-1}

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++ \
  -DLORANULL_FUZZ=ON -DLORANULL_CUDA=OFF -DLORANULL_BUILD_BENCHMARKS=OFF -DLORANULL_BUILD_EXAMPLES=OFF >/dev/null
# Debug: nlohmann-json's assertions stay on (the target adds -O1 and the sanitizers).
nice -n 10 cmake --build "$build" --target fuzz_safetensors -j "$jobs"

mkdir -p "$build/corpus" "$build/artifacts"
cp -n tests/fuzz/corpus/* "$build/corpus/" 2>/dev/null || true
echo "fuzzing the safetensors reader for ${seconds} s (corpus $build/corpus, artifacts $build/artifacts)"
# With -jobs/-workers libFuzzer runs the job in a child process whose output
# goes to fuzz-0.log in the working directory: run from the build dir and show
# the log's end afterwards.
status=0
(cd "$build" && rm -f fuzz-*.log &&
  nice -n 10 ./tests/fuzz/fuzz_safetensors corpus -max_total_time="$seconds" -jobs=1 -workers=1 \
    -dict="$root/tests/fuzz/safetensors.dict" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -artifact_prefix=artifacts/ -print_final_stats=1 "$@") || status=$?
if ls "$build"/fuzz-*.log >/dev/null 2>&1; then tail -n 40 "$build"/fuzz-*.log; fi
if ls "$build"/artifacts/* >/dev/null 2>&1; then
  echo "artifacts (reproducers) in $build/artifacts:" && ls -la "$build/artifacts"
  if [ "$status" -eq 0 ]; then status=1; fi
fi
echo "corpus now holds $(ls "$build/corpus" | wc -l) inputs; exit status $status"
exit "$status"
