#!/usr/bin/env bash
# Installs what is missing, builds and runs the main job. Until the LLaMA
# experiment lands, that is the one-layer version of it:
# examples/layer_finetune_demo.cpp (calibrate, initialise with every method,
# fine-tune on a task, measure what each keeps and learns). Extra arguments go
# to the demo (--help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build --target layer_finetune_demo -j "$(nproc)"
mkdir -p out
cd out && ../build/examples/layer_finetune_demo "$@"
