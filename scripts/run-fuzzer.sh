#!/usr/bin/env bash
# Fuzzes one parser of untrusted input with libFuzzer + AddressSanitizer + UBSan.
#
#   scripts/run-fuzzer.sh NAME [SECONDS] [extra libFuzzer flags...]
#
# NAME is a target of tests/fuzz (fuzz_NAME.cpp): safetensors, hf_checkpoint,
# tokenizer_json, tokenize, peft_adapter, covariance, command_line. SECONDS
# defaults to 600 (the 10 minutes docs/reliability.md reports).
#
# Configures build-fuzz/ with clang++ (LORANULL_FUZZ=ON), builds only
# fuzz_NAME, and runs it on a working copy of the seed corpus
# tests/fuzz/corpus/NAME/ (new inputs go to build-fuzz/corpus/NAME, never into
# the source tree; crashes, leaks, timeouts and out-of-memory inputs go to
# build-fuzz/artifacts/NAME/). The dictionary tests/fuzz/NAME.dict, where there
# is one, guides the mutations. One process, niced: the build machines are
# shared. Environment: JOBS (build parallelism, default 1), BUILD_DIR (default
# build-fuzz). The last line is the summary docs/reliability.md tabulates:
#   fuzz NAME: E executions in S s, coverage C edges (F features), corpus K inputs, status X
#
# A reproducer is replayed with: build-fuzz/tests/fuzz/fuzz_NAME FILE
# Keep it (small, < 4 KB) in tests/fuzz/corpus/NAME/ once fixed: CI replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
name=${1:?usage: scripts/run-fuzzer.sh NAME [SECONDS] [libFuzzer flags...]}
seconds=${2:-600}
shift; shift || true
[ -f "tests/fuzz/fuzz_$name.cpp" ] || { echo "run-fuzzer.sh: no target tests/fuzz/fuzz_$name.cpp" >&2; exit 2; }
build=${BUILD_DIR:-build-fuzz}
jobs=${JOBS:-1}
# libFuzzer comes with clang (Debian: clang, which pulls in libclang-rt-*-dev);
# the rest of the dependencies are the test suite's.
if ! command -v clang++ >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && apt-get install -y -qq clang >/dev/null
  else echo "run-fuzzer.sh: clang++ is needed (apt-get install clang)" >&2; exit 2; fi
fi
bash scripts/install-deps.sh

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++ -DLORANULL_FUZZ=ON \
  -DLORANULL_FUZZ_REPLAY=OFF -DLORANULL_CUDA=OFF -DLORANULL_BUILD_BENCHMARKS=OFF -DLORANULL_BUILD_EXAMPLES=OFF >/dev/null
# Debug: nlohmann-json's and Eigen's assertions stay on (the target adds -O1 and the sanitizers).
nice -n 10 cmake --build "$build" --target "fuzz_$name" -j "$jobs"

corpus="$build/corpus/$name" artifacts="$build/artifacts/$name" log="$build/fuzz_$name.log"
mkdir -p "$corpus" "$artifacts"
cp -n "tests/fuzz/corpus/$name"/* "$corpus/" 2>/dev/null || true
dict=()
[ -f "tests/fuzz/$name.dict" ] && dict=(-dict="$root/tests/fuzz/$name.dict")
echo "fuzzing $name for ${seconds} s (corpus $corpus, artifacts $artifacts, log $log)"
status=0
nice -n 10 "$build/tests/fuzz/fuzz_$name" "$corpus" -max_total_time="$seconds" "${dict[@]}" -max_len=8192 \
  -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 -artifact_prefix="$artifacts/" -print_final_stats=1 "$@" \
  >"$log" 2>&1 || status=$?
tail -n 25 "$log"
if ls "$artifacts"/* >/dev/null 2>&1; then
  echo "artifacts (reproducers) in $artifacts:" && ls -la "$artifacts"
  if [ "$status" -eq 0 ]; then status=1; fi
fi
executions=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
coverage=$(echo "$last" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*' || echo "?")
features=$(echo "$last" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*' || echo "?")
echo "fuzz $name: $executions executions in $seconds s, coverage $coverage edges ($features features)," \
     "corpus $(ls "$corpus" | wc -l) inputs, status $status"
exit "$status"
