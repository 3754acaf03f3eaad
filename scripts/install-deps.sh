#!/usr/bin/env bash
# Installs what loranull needs on Debian 12 (as root), skipping what is there.
# CUDA is optional and not installed here: when nvcc is on PATH the CUDA
# targets are built too.
set -euo pipefail
packages=(cmake ninja-build g++ ccache libeigen3-dev libopenblas-dev liblapacke-dev nlohmann-json3-dev
          doctest-dev libbenchmark-dev python3-numpy)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
