#!/usr/bin/env bash
# Installs what is missing, builds and runs the main job: for now the
# calibration demo (covariance -> null space -> what LoRA-Null's W P responds
# to), examples/null_space_demo.cpp. Extra arguments go to the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build --target null_space_demo -j "$(nproc)"
mkdir -p out
cd out && ../build/examples/null_space_demo "$@"
