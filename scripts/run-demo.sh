#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the knowledge-
# retention experiment (docs/results.md) on the shipped pre-trained model:
# calibrate, fine-tune on addition with every method, measure what each keeps
# and learns. Results go to ./results (table, CSV, JSON, PNG plots). The
# default: rank 32, one seed, each method at the rate where the full grid
# found it at half the task learned (docs/results.md).
# Extra arguments go to loranull-experiment (--help lists them; --sweep runs
# five rates per method and three seeds, --ranks 8,32 several ranks,
# --device cuda on a GPU); scripts/run-grid.sh runs the full grid in parallel.
#
# Its own build folder (build-demo) holds only what the experiment needs; the
# CUDA half is compiled only when --device cuda is asked for (nvcc takes
# minutes over it, and a CPU run does not use it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cuda=OFF
for arg in "$@"; do [ "$arg" = cuda ] && cuda=ON; done
cmake -S . -B build-demo -G Ninja -DCMAKE_BUILD_TYPE=Release -DLORANULL_CUDA=$cuda \
      -DLORANULL_BUILD_TESTS=OFF -DLORANULL_BUILD_BENCHMARKS=OFF -DLORANULL_BUILD_EXAMPLES=ON
cmake --build build-demo --target loranull-experiment -j "$(nproc)"
# Eigen's OpenMP threads spin between products unless told to wait passively.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
./build-demo/examples/loranull-experiment "$@"
