#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the knowledge-
# retention experiment (docs/results.md) on the shipped pre-trained model:
# calibrate, fine-tune on addition with every method, measure what each keeps
# and learns. Results go to ./results (table, CSV, JSON, PNG plots).
# Extra arguments go to loranull-experiment (--help lists them; --sweep runs
# the full learning-rate x seed grid).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build --target loranull-experiment -j "$(nproc)"
# Eigen's OpenMP threads spin between products unless told to wait passively.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
./build/examples/loranull-experiment "$@"
