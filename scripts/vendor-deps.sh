#!/usr/bin/env bash
# Copies the dependencies that scripts/gpu-check.sh needs, and that a bare GPU
# machine (CUDA, CMake, ninja and a compiler, nothing else, no network) lacks,
# from this machine's Debian packages into a prefix, .deps/ by default
# (git-ignored), laid out as an install prefix so that CMAKE_PREFIX_PATH finds
# each package's own CMake config:
#
#   include/eigen3, share/eigen3/cmake            Eigen 3.4 (libeigen3-dev)
#   include/nlohmann, share/cmake/nlohmann_json   nlohmann-json (nlohmann-json3-dev)
#   include/doctest, lib/cmake/doctest            doctest (doctest-dev)
#   include/benchmark, lib/<triplet>/libbenchmark.so*, lib/<triplet>/cmake/benchmark
#                                                 Google Benchmark 1.7 (libbenchmark-dev; a
#                                                 shared library built for Debian 12: needs
#                                                 glibc >= 2.32 and GLIBCXX_3.4.30 where it runs)
#   include/CLI, share/cmake/CLI11                CLI11 (libcli11-dev; header-only)
#   include/pcre2.h, include/utf8proc.h, lib/<triplet>/libpcre2-8.so*, libutf8proc.so*
#                                                 PCRE2 and utf8proc (libpcre2-dev, libutf8proc-dev;
#                                                 shared libraries, same glibc rule)
#   (these three let gpu-check.sh build loranull-build for the builder's parity)
#
# OpenBLAS/LAPACKE are not copied: on the GPU machine the CPU half of the parity
# tests is built with LORANULL_USE_LAPACK=OFF (Eigen's own solvers), which needs
# nothing beyond Eigen. About 14 MB in all.
#
# Usage: scripts/vendor-deps.sh [PREFIX]        (default: <repo>/.deps)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$repo/.deps}
triplet=$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)

need() {  # need PATH PACKAGE
    if [ ! -e "$1" ]; then
        echo "vendor-deps: $1 is missing: apt-get install $2 (or scripts/install-deps.sh)" >&2
        exit 1
    fi
}
need /usr/include/eigen3/Eigen/Dense libeigen3-dev
need /usr/share/eigen3/cmake/Eigen3Config.cmake libeigen3-dev
need /usr/include/nlohmann/json.hpp nlohmann-json3-dev
need /usr/share/cmake/nlohmann_json/nlohmann_jsonConfig.cmake nlohmann-json3-dev
need /usr/include/doctest/doctest.h doctest-dev
need /usr/lib/cmake/doctest/doctestConfig.cmake doctest-dev

need /usr/include/CLI/CLI.hpp libcli11-dev
need /usr/share/cmake/CLI11/CLI11Config.cmake libcli11-dev
need /usr/include/pcre2.h libpcre2-dev
need /usr/include/utf8proc.h libutf8proc-dev

rm -rf "$dest"
mkdir -p "$dest/include" "$dest/share/eigen3" "$dest/share/cmake" "$dest/lib/cmake" "$dest/lib/$triplet/cmake"

cp -a /usr/include/eigen3 "$dest/include/"
cp -a /usr/share/eigen3/cmake "$dest/share/eigen3/"
cp -a /usr/include/nlohmann "$dest/include/"
cp -a /usr/share/cmake/nlohmann_json "$dest/share/cmake/"
cp -a /usr/include/doctest "$dest/include/"
cp -a /usr/lib/cmake/doctest "$dest/lib/cmake/"
cp -a /usr/include/CLI "$dest/include/"
cp -a /usr/share/cmake/CLI11 "$dest/share/cmake/"
cp -a /usr/include/pcre2.h /usr/include/utf8proc.h "$dest/include/"
cp -a /usr/lib/"$triplet"/libpcre2-8.so* /usr/lib/"$triplet"/libutf8proc.so* "$dest/lib/$triplet/"

# Google Benchmark is a compiled library; Debian ships it shared only (no
# libbenchmark.a). Optional: without it gpu-check.sh builds and runs the tests
# and says that the benchmarks were skipped.
lib=/usr/lib/$triplet
if [ -e /usr/include/benchmark/benchmark.h ] && [ -e "$lib/cmake/benchmark/benchmarkConfig.cmake" ] &&
   ls "$lib"/libbenchmark.so.* >/dev/null 2>&1; then
    cp -a /usr/include/benchmark "$dest/include/"
    cp -a "$lib/cmake/benchmark" "$dest/lib/$triplet/cmake/"
    cp -a "$lib"/libbenchmark.so* "$dest/lib/$triplet/"          # the library and its symlinks
    [ -e "$lib/libbenchmark_main.a" ] && cp -a "$lib/libbenchmark_main.a" "$dest/lib/$triplet/"
    benchmark=yes
else
    echo "vendor-deps: Google Benchmark not found (apt-get install libbenchmark-dev): GPU benchmarks will be skipped" >&2
    benchmark=no
fi

{
    echo "# loranull vendored dependencies, made by scripts/vendor-deps.sh on $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "# from $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"), $(uname -m)"
    dpkg-query -W libeigen3-dev nlohmann-json3-dev doctest-dev libbenchmark-dev libcli11-dev libpcre2-dev \
        libutf8proc-dev 2>/dev/null || true
    echo "benchmark=$benchmark"
} > "$dest/MANIFEST"
echo "vendor-deps: $(du -sh "$dest" | cut -f1) in $dest (benchmark: $benchmark)"
