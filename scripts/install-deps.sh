#!/usr/bin/env bash
# Installs what loranull needs on Debian 12 (as root), skipping what is there.
# jargon-text (the Jargon File, public domain), zlib and gnuplot are for the
# knowledge-retention experiment (docs/results.md); Open MPI for mpirun -np K
# loranull-build (docs/loranull-build.md) and its tests. CUDA is optional and not installed here: when nvcc is on PATH the CUDA
# targets are built too. LORANULL_BENCH_PEERS=1 adds PyTorch for the benchmarks' peers.
set -euo pipefail
packages=(cmake ninja-build g++ ccache libeigen3-dev libopenblas-dev liblapacke-dev nlohmann-json3-dev
          doctest-dev libbenchmark-dev libcli11-dev python3-numpy zlib1g-dev jargon-text gnuplot-nox
          libpcre2-dev libutf8proc-dev libopenmpi-dev openmpi-bin)
# The benchmarks' PyTorch peers (bench/pytorch_*.py; docs/benchmarks.md): large,
# and no test needs them, so only on request.
if [ "${LORANULL_BENCH_PEERS:-0}" = 1 ]; then packages+=(python3-torch); fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Minimal images (debian:*-slim) tell dpkg to skip /usr/share/doc, where
# jargon-text keeps the Jargon File: unpack the package by hand then.
jargon=/usr/share/doc/jargon-text/jargon.txt.gz
fallback=/usr/local/share/jargon-text/jargon.txt.gz
if [ ! -f "$jargon" ] && [ ! -f "$fallback" ]; then
  echo "dpkg skipped $jargon (path-exclude?): unpacking jargon-text into $(dirname "$fallback")"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download jargon-text >/dev/null && dpkg-deb -x jargon-text_*.deb root)
  install -D -m 644 "$tmp/root$jargon" "$fallback"
  rm -rf "$tmp"
fi
