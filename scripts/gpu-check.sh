#!/usr/bin/env bash
# The GPU check: builds the CUDA tests and benchmarks (Release, and nothing
# else), runs the GPU tests and the GPU benchmarks, and writes logs and a short
# summary table to OUTDIR. Sized for one H100/H200 with a 16-core host: about
# 3 minutes of build, 1 of tests, 2-3 of benchmarks; every step has a time
# limit and the whole run stops starting new steps after BUDGET seconds
# (default 450), so it ends within 8 minutes whatever hangs.
#
#   scripts/gpu-check.sh OUTDIR [DEPS]
#
# DEPS (default: $LORANULL_DEPS, else <repo>/.deps) is a prefix made by
# scripts/vendor-deps.sh holding Eigen, nlohmann-json, doctest and Google
# Benchmark: the GPU machine has only CUDA, CMake, ninja and a compiler. Where a
# package is installed system-wide it is found there as well. The CPU half of
# the parity tests uses Eigen's own solvers (LORANULL_USE_LAPACK=OFF), so no
# BLAS/LAPACK is needed. Without Google Benchmark the benchmarks are skipped and
# the summary says so.
#
# Build: CMake (>= 3.25) + ninja when they work; otherwise (no CMake, too old,
# configure fails) the same targets are compiled directly with nvcc and g++.
# Force the direct build with LORANULL_GPU_CHECK_DIRECT=1.
#
# Environment: LORANULL_GPU_BUILD (build dir, default <repo>/build-gpu-check),
# LORANULL_GPU_CHECK_BUDGET (seconds, default 450), JOBS (default nproc),
# CUDA_ARCH (e.g. 90; default: the GPU's compute capability, else 90).
#
# Steps, in order of priority (the budget may stop the last ones): build,
# test_cuda_status, test_cuda_nn_emulated (CudaBackend's NN kernel members
# on the host), test_cuda_parity (every primitive, linalg algorithm, NN kernel and the
# whole LLaMA model, CPU vs GPU), the builder's parity (loranull-build
# --device cuda against --device cpu on a tiny checkpoint: one process, and
# mpirun -np 2 where mpirun exists; needs CLI11, PCRE2 and utf8proc in DEPS),
# the fine-tuning's parity (loranull-finetune --device cuda against --device
# cpu, 1 and 2 ranks), bench_llama_cuda (training tokens/s), a loranull-finetune
# step on a 113M checkpoint (needs numpy), the PyTorch CUDA peer
# (bench/pytorch_llama.py --device cuda, when a python3 with a CUDA build of
# torch is there; otherwise a note), bench_cuda, ctest -L gpu.
#
# Behind flags (long; each needs its own device time):
#   LORANULL_GPU_CHECK_LONG=1  bench_cuda's n = 11008 eigensolver cases beyond
#                              the bottom-128 f64 one (all pairs, f32)
#   LORANULL_GPU_CHECK_7B=1    the LLaMA-2-7B-shaped build: a random BF16
#                              checkpoint (32 blocks, 4096/11008) generated here,
#                              256 x 2048 calibration tokens, loranull-build
#                              --device cuda; seconds per part and peak device
#                              memory (docs/benchmarks.md has the expected figures).
#                              Needs python3 with numpy and ~40 GB of disk in
#                              LORANULL_GPU_WORK (default /tmp/loranull-gpu-work).
#
# Output: progress lines while it runs, then OUTDIR/summary.md, whose first
# line is the verdict; every step's details are in its log file.
# Exit status: 0 when every step that ran succeeded (skips included), 1 otherwise.
# Outputs: OUTDIR/summary.md (the table), env.txt, configure.log, build.log,
# build-builder.log, test_cuda_status.log, test_cuda_nn_emulated.log, test_cuda_parity.log,
# builder_parity.log, finetune_parity.log, bench_llama.log, bench_finetune.log, bench_llama.json, pytorch_llama_cuda.log, ctest.log,
# bench.log, bench.json; with the 7B step: make_7b.log, build_7b.log, report_7b.json,
# device_memory_7b.csv.
set -uo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 OUTDIR [DEPS]" >&2
    exit 2
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
deps=${2:-${LORANULL_DEPS:-$repo/.deps}}
[ -d "$deps" ] && deps=$(cd "$deps" && pwd)
# The GPU machine comes without Eigen and doctest: they travel in .deps
# (git-ignored, so absent unless carried). Stop at once, saying how, rather
# than after minutes of a build that cannot succeed.
if [ ! -d "$deps/include/eigen3" ] && [ ! -d /usr/include/eigen3 ]; then
    echo "gpu-check: no Eigen: $deps/include/eigen3 is missing (and /usr/include/eigen3 too)." >&2
    echo "  On the CPU machine: bash scripts/vendor-deps.sh, then run this with carry=[\".deps\"]." >&2
    exit 3
fi
# nvcc from CUDACXX, else PATH, else the standard install location.
nvcc_bin=${CUDACXX:-$(command -v nvcc || true)}
[ -n "$nvcc_bin" ] || nvcc_bin=/usr/local/cuda/bin/nvcc
export PATH="$(dirname "$nvcc_bin"):$PATH"
build=${LORANULL_GPU_BUILD:-$repo/build-gpu-check}
budget=${LORANULL_GPU_CHECK_BUDGET:-450}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 4)}
start=$(date +%s)
deadline=$((start + budget))
# The 7B build brings its own time: 5 minutes to generate, up to 10 to build.
[ "${LORANULL_GPU_CHECK_7B:-0}" = 1 ] && deadline=$((deadline + 900))
summary=$out/summary.md
failed=0
rows=()

elapsed() { echo $(($(date +%s) - start)); }
remaining() { echo $((deadline - $(date +%s))); }
say() { echo "[gpu-check +$(elapsed)s] $*"; }
row() { rows+=("| $1 | $2 | $3 | $4 |"); }  # step, status, seconds, log

# run_step NAME LIMIT LOG COMMAND...: runs COMMAND with a time limit (capped by
# what is left of the budget), output to LOG; sets step_status and step_seconds.
run_step() {
    local name=$1 limit=$2 logfile=$3
    shift 3
    local left
    left=$(remaining)
    if [ "$left" -le 10 ]; then
        step_status="not run (budget spent)"
        step_seconds=0
        say "$name: skipped, budget spent"
        return 124
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    say "$name (limit ${limit}s) -> $(basename "$logfile")"
    local t0 rc
    t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" >"$logfile" 2>&1
    rc=$?
    step_seconds=$(($(date +%s) - t0))
    if [ $rc -eq 0 ]; then
        step_status=ok
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        step_status="TIMEOUT after ${limit}s"
    else
        step_status="FAILED (exit $rc)"
    fi
    say "$name: $step_status in ${step_seconds}s"
    return $rc
}

# --- the machine -------------------------------------------------------------
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(uname -a)"
    echo "repo: $repo ($(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout'))"
    echo "deps: $deps"
    [ -f "$deps/MANIFEST" ] && sed 's/^/  /' "$deps/MANIFEST"
    echo "--- nvidia-smi"
    nvidia-smi 2>&1 || echo "nvidia-smi not available"
    echo "--- nvcc"
    "$nvcc_bin" --version 2>&1 || echo "nvcc not found ($nvcc_bin)"
    echo "--- cmake / ninja / c++"
    cmake --version 2>&1 | head -1 || true
    ninja --version 2>&1 || true
    ${CXX:-g++} --version 2>&1 | head -1 || true
    echo "--- cpu"
    nproc 2>&1
    grep -m1 "model name" /proc/cpuinfo 2>/dev/null || true
} >"$out/env.txt" 2>&1
gpu_name=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
[ -n "$gpu_name" ] || gpu_name="no GPU visible to nvidia-smi"
if [ -z "${CUDA_ARCH:-}" ]; then
    cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
    case "$cap" in [0-9][0-9]|[0-9][0-9][0-9]) CUDA_ARCH=$cap ;; *) CUDA_ARCH=90 ;; esac
fi
say "GPU: $gpu_name; building for sm_$CUDA_ARCH; deps: $deps; jobs: $jobs; budget: ${budget}s"

have_benchmark=OFF
benchmark_dir=""  # passed as benchmark_DIR: non-multiarch hosts do not search lib/<triplet>/cmake
for config in "$deps"/lib/*/cmake/benchmark/benchmarkConfig.cmake "$deps"/lib/cmake/benchmark/benchmarkConfig.cmake \
              "$deps"/lib64/cmake/benchmark/benchmarkConfig.cmake \
              /usr/lib/*/cmake/benchmark/benchmarkConfig.cmake /usr/local/lib/cmake/benchmark/benchmarkConfig.cmake; do
    if [ -e "$config" ] && [ $have_benchmark = OFF ]; then
        have_benchmark=ON
        benchmark_dir=$(dirname "$config")
    fi
done

# The builder's parity needs loranull-build, hence CLI11 (headers), PCRE2 and
# utf8proc (scripts/vendor-deps.sh copies them); without them it is skipped.
have_tools=OFF
if { [ -f "$deps/include/CLI/CLI.hpp" ] || [ -f /usr/include/CLI/CLI.hpp ]; } &&
   { [ -f "$deps/include/pcre2.h" ] || [ -f /usr/include/pcre2.h ]; } &&
   { [ -f "$deps/include/utf8proc.h" ] || [ -f /usr/include/utf8proc.h ]; }; then
    have_tools=ON
fi

# --- build ----------------------------------------------------------------------
bin_status=$build/tests/cuda/test_cuda_status
bin_parity=$build/tests/cuda/test_cuda_parity
bin_bench=$build/bench/cuda/bench_cuda
bin_emulated=$build/tests/cuda/test_cuda_nn_emulated
bin_bench_llama=$build/bench/cuda/bench_llama_cuda
bin_builder=$build/tools/loranull-build
bin_builder_test=$build/tests/test_loranull_build_gpu
mode=cmake
if [ "${LORANULL_GPU_CHECK_DIRECT:-0}" = 1 ] || ! command -v cmake >/dev/null 2>&1; then
    mode=direct
fi

if [ $mode = cmake ]; then
    generator="Unix Makefiles"
    command -v ninja >/dev/null 2>&1 && generator=Ninja
    # A build directory made with another generator cannot be reused: start afresh.
    if [ -f "$build/CMakeCache.txt" ] && ! grep -q "^CMAKE_GENERATOR:INTERNAL=$generator\$" "$build/CMakeCache.txt"; then
        rm -rf "$build"
    fi
    if run_step configure 120 "$out/configure.log" \
        cmake -S "$repo" -B "$build" -G "$generator" -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_PREFIX_PATH="$deps" -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH}-real" \
        -DLORANULL_CUDA=ON -DLORANULL_USE_LAPACK=OFF -DLORANULL_BUILD_TESTS=ON \
        -DLORANULL_BUILD_BENCHMARKS=$have_benchmark -DLORANULL_BUILD_EXAMPLES=OFF -DLORANULL_BUILD_TOOLS=$have_tools \
        -DCMAKE_CUDA_COMPILER="$nvcc_bin" ${benchmark_dir:+-Dbenchmark_DIR="$benchmark_dir"}; then
        if grep -q "CUDA targets OFF" "$out/configure.log"; then
            step_status="FAILED (CMake found no CUDA compiler)"
            failed=1
        fi
        row configure "$step_status" "$step_seconds" configure.log
    else
        row "configure (CMake)" "$step_status: falling back to the direct build" "$step_seconds" configure.log
        mode=direct
    fi
fi

if [ $mode = cmake ]; then
    # The tests first, the benchmarks in a step of their own: a benchmark that
    # fails to build must not keep the tests from being built and run.
    targets=(test_cuda_status test_cuda_nn_emulated test_cuda_parity)
    run_step build 360 "$out/build.log" cmake --build "$build" --target "${targets[@]}" -j "$jobs" || failed=1
    row "build (CMake: ${targets[*]})" "$step_status" "$step_seconds" build.log
    if [ $have_tools = ON ]; then
        run_step build-builder 300 "$out/build-builder.log" \
            cmake --build "$build" --target loranull-build test_loranull_build_gpu loranull-finetune loranull-eval \
            test_loranull_finetune_gpu -j "$jobs" || failed=1
        row "build (CMake: loranull-build loranull-finetune and their GPU tests)" "$step_status" "$step_seconds" build-builder.log
    fi
    if [ $have_benchmark = ON ]; then
        run_step build-benchmarks 240 "$out/build-benchmarks.log" \
            cmake --build "$build" --target bench_cuda bench_llama_cuda -j "$jobs" || true
        row "build (CMake: bench_cuda bench_llama_cuda)" "$step_status" "$step_seconds" build-benchmarks.log
    fi
else
    # The same targets, compiled directly: what tests/cuda/CMakeLists.txt and
    # bench/cuda/CMakeLists.txt declare, spelled out; at most $jobs compilers at once.
    direct_build() {
        set -e
        local nvcc=$nvcc_bin cxx=${CXX:-g++}
        local cuda_root cuda_lib
        cuda_root=$(cd "$(dirname "$(command -v "$nvcc")")/.." && pwd)
        cuda_lib=$cuda_root/lib64
        [ -d "$cuda_lib" ] || cuda_lib=$cuda_root/targets/x86_64-linux/lib
        local inc=(-I"$repo/include" -I"$deps/include" -I"$deps/include/eigen3" -I/usr/include/eigen3)
        local nvflags=(-std=c++20 -O3 -DNDEBUG -gencode "arch=compute_${CUDA_ARCH},code=sm_${CUDA_ARCH}" -cudart shared)
        local cxxflags=(-std=c++20 -O2 -DNDEBUG -DLORANULL_CPU_NO_LAPACK -pthread)
        mkdir -p "$build/tests/cuda" "$build/bench/cuda" "$build/obj"
        local running=0 rc=0
        spawn() {  # runs "$@" in the background, keeping at most $jobs running
            if [ "$running" -ge "$jobs" ]; then wait -n || rc=1; running=$((running - 1)); fi
            echo "+ $*"
            "$@" &
            running=$((running + 1))
        }
        local cu cpp
        for cu in parity_gpu parity_gpu_nn gpu_only parity_emulated; do  # the .cu halves (no Eigen)
            spawn "$nvcc" "${nvflags[@]}" "${inc[@]}" -c "$repo/tests/cuda/$cu.cu" -o "$build/obj/$cu.o"
        done
        for cpp in test_parity test_parity_model test_parity_nn test_cuda_gpu_only; do  # the CPU halves (Eigen)
            spawn "$cxx" "${cxxflags[@]}" -O1 "${inc[@]}" -c "$repo/tests/cuda/$cpp.cpp" -o "$build/obj/$cpp.o"
        done
        spawn "$cxx" "${cxxflags[@]}" "${inc[@]}" -c "$repo/tests/cuda/gpu_main.cpp" -o "$build/obj/gpu_main.o"
        spawn "$nvcc" "${nvflags[@]}" "${inc[@]}" "$repo/tests/cuda/test_cuda_status.cu" -o "$bin_status" \
            -L"$cuda_lib" -Xlinker -rpath="$cuda_lib" -lcublas -lcusolver
        while [ "$running" -gt 0 ]; do wait -n || rc=1; running=$((running - 1)); done
        [ $rc -eq 0 ] || return 1
        echo "+ link test_cuda_parity"
        "$cxx" "$build/obj/test_parity.o" "$build/obj/test_parity_model.o" "$build/obj/test_parity_nn.o" \
            "$build/obj/test_cuda_gpu_only.o" "$build/obj/gpu_main.o" "$build/obj/parity_gpu.o" \
            "$build/obj/parity_gpu_nn.o" "$build/obj/gpu_only.o" -o "$bin_parity" \
            -L"$cuda_lib" -Wl,-rpath,"$cuda_lib" -lcudart -lcublas -lcusolver -pthread
        echo "+ link test_cuda_nn_emulated"
        "$cxx" "$build/obj/test_parity_nn.o" "$build/obj/gpu_main.o" "$build/obj/parity_emulated.o" \
            -o "$bin_emulated" -L"$cuda_lib" -Wl,-rpath,"$cuda_lib" -lcudart -pthread
        # The benchmarks after the tests are linked: a benchmark that fails to
        # build cannot keep the tests from running (this step then fails alone).
        if [ "$have_benchmark" = ON ]; then
            local blib="" candidate
            for candidate in "$deps"/lib/*/libbenchmark.so "$deps"/lib/libbenchmark.so /usr/lib/*/libbenchmark.so \
                             /usr/local/lib/libbenchmark.so; do  # the vendored copy first
                if [ -z "$blib" ] && [ -e "$candidate" ]; then blib=$(dirname "$candidate"); fi
            done
            spawn "$nvcc" "${nvflags[@]}" "${inc[@]}" "$repo/bench/cuda/bench_cuda.cu" -o "$bin_bench" \
                -L"$blib" -Xlinker -rpath="$blib" -L"$cuda_lib" -Xlinker -rpath="$cuda_lib" -lbenchmark -lcublas \
                -lcusolver
            spawn "$nvcc" "${nvflags[@]}" "${inc[@]}" "$repo/bench/cuda/bench_llama_cuda.cu" -o "$bin_bench_llama" \
                -L"$blib" -Xlinker -rpath="$blib" -L"$cuda_lib" -Xlinker -rpath="$cuda_lib" -lbenchmark -lcublas \
                -lcusolver
        fi
        while [ "$running" -gt 0 ]; do wait -n || rc=1; running=$((running - 1)); done
        [ $rc -eq 0 ]
    }
    export repo deps build jobs CUDA_ARCH have_benchmark bin_status bin_parity bin_bench bin_emulated bin_bench_llama nvcc_bin
    run_step "build (direct)" 360 "$out/build.log" bash -c "$(declare -f direct_build); direct_build" || failed=1
    row "build (direct nvcc/g++)" "$step_status" "$step_seconds" build.log
fi

# --- tests ----------------------------------------------------------------------
# doctest's last lines: "[doctest] test cases: 30 | 30 passed | 0 failed | 0 skipped".
doctest_result() { grep -h "test cases:" "$1" 2>/dev/null | tail -1 | sed 's/\[doctest\] //; s/|/,/g'; }

if [ -x "$bin_status" ]; then
    run_step test_cuda_status 60 "$out/test_cuda_status.log" "$bin_status" || failed=1
    row test_cuda_status "$step_status: $(doctest_result "$out/test_cuda_status.log")" "$step_seconds" test_cuda_status.log
else
    row test_cuda_status "not built" 0 build.log
    failed=1
fi
if [ -x "$bin_emulated" ]; then
    run_step test_cuda_nn_emulated 60 "$out/test_cuda_nn_emulated.log" "$bin_emulated" || failed=1
    row test_cuda_nn_emulated "$step_status: $(doctest_result "$out/test_cuda_nn_emulated.log")" "$step_seconds" \
        test_cuda_nn_emulated.log
else
    row test_cuda_nn_emulated "not built" 0 build.log
    failed=1
fi
if [ -x "$bin_parity" ]; then
    run_step test_cuda_parity 240 "$out/test_cuda_parity.log" "$bin_parity" --duration=true || failed=1
    if grep -q "no CUDA device" "$out/test_cuda_parity.log"; then
        step_status="SKIPPED: $(grep -m1 'no CUDA device' "$out/test_cuda_parity.log")"
        failed=1  # the point of this script is to run them
    fi
    row test_cuda_parity "$step_status: $(doctest_result "$out/test_cuda_parity.log")" "$step_seconds" test_cuda_parity.log
else
    row test_cuda_parity "not built" 0 build.log
    failed=1
fi

# The whole builder: loranull-build --device cuda against --device cpu
# (tests/test_loranull_build_gpu.cpp; its mpirun case is compiled where MPI was found).
if [ -x "$bin_builder_test" ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
    run_step "builder parity" 180 "$out/builder_parity.log" "$bin_builder_test" || failed=1
    if grep -q "parity was not run" "$out/builder_parity.log"; then
        step_status="SKIPPED: $(grep -m1 -o 'no CUDA device[^"]*' "$out/builder_parity.log")"
        failed=1
    fi
    command -v mpirun >/dev/null 2>&1 || step_status="$step_status (1 process only: no mpirun here)"
    row "builder parity (loranull-build --device cuda vs cpu)" \
        "$step_status: $(doctest_result "$out/builder_parity.log")" "$step_seconds" builder_parity.log
elif [ $have_tools = OFF ]; then
    row "builder parity" "skipped: CLI11/PCRE2/utf8proc not in $deps (scripts/vendor-deps.sh)" 0 -
elif [ $mode = direct ]; then
    row "builder parity" "skipped: needs the CMake build (the direct build makes the GPU tests only)" 0 -
else
    row "builder parity" "not built" 0 build-builder.log
    failed=1
fi

# The fine-tuning: loranull-finetune --device cuda against --device cpu
# (tests/test_loranull_finetune_gpu.cpp: one process, and mpirun -np 2).
bin_finetune_test=$build/tests/test_loranull_finetune_gpu
if [ -x "$bin_finetune_test" ]; then
    run_step "finetune parity" 180 "$out/finetune_parity.log" "$bin_finetune_test" || failed=1
    if grep -q "parity was not run" "$out/finetune_parity.log"; then
        step_status="SKIPPED: $(grep -m1 -o 'no CUDA device[^"]*' "$out/finetune_parity.log")"
        failed=1
    fi
    row "finetune parity (loranull-finetune --device cuda vs cpu)" \
        "$step_status: $(doctest_result "$out/finetune_parity.log")" "$step_seconds" finetune_parity.log
else
    row "finetune parity" "not built (needs the CMake build with the tools)" 0 -
fi

# --- benchmarks -------------------------------------------------------------------
# The LLaMA training step first (short), then its PyTorch peer, then the
# linear-algebra benchmarks (long: eigensolvers at n = 11008).
if [ $have_benchmark = ON ] && [ -x "$bin_bench_llama" ]; then
    run_step bench_llama_cuda 90 "$out/bench_llama.log" "$bin_bench_llama" --benchmark_min_time=0.5 \
        --benchmark_out="$out/bench_llama.json" --benchmark_out_format=json || failed=1
    row bench_llama_cuda "$step_status" "$step_seconds" bench_llama.log
elif [ $have_benchmark = ON ]; then
    row bench_llama_cuda "not built" 0 build.log
    failed=1
fi
# A fine-tuning step on the 112.7M checkpoint of bench_build.sh (generated
# here: needs python3 with numpy), --device cuda: tokens/s (docs/benchmarks.md).
finetune_bin=$build/tools/loranull-finetune
if [ -x "$finetune_bin" ] && python3 -c "import numpy" >/dev/null 2>&1; then
    run_step "bench_finetune --device cuda" 240 "$out/bench_finetune.log" \
        env DEVICE=cuda PEER=0 sh "$repo/bench/bench_finetune.sh" "$build" "${LORANULL_GPU_WORK:-/tmp/loranull-gpu-work}/finetune" ||
        failed=1
    row "loranull-finetune step, 113M checkpoint, 4 x 512 tokens, --device cuda" "$step_status: $(grep -m1 '^loranull-finetune' "$out/bench_finetune.log" || true)" "$step_seconds" bench_finetune.log
else
    row "bench_finetune --device cuda" "skipped: no loranull-finetune or no python3 with numpy" 0 -
fi
# The PyTorch CUDA peer, only where a python3 has torch built with CUDA and
# sees the GPU; otherwise a note, not a failure.
torch_python=""
for candidate in ${PYTHON:-} python3 /usr/bin/python3; do
    if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 &&
        timeout 60 "$candidate" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)" >/dev/null 2>&1; then
        torch_python=$candidate
        break
    fi
done
if [ -n "$torch_python" ]; then
    run_step "pytorch_llama --device cuda" 120 "$out/pytorch_llama_cuda.log" \
        "$torch_python" "$repo/bench/pytorch_llama.py" --device cuda --steps 10 || failed=1
    row "PyTorch peer (bench/pytorch_llama.py --device cuda)" "$step_status" "$step_seconds" pytorch_llama_cuda.log
else
    row "PyTorch peer (bench/pytorch_llama.py --device cuda)" \
        "skipped: no python3 with a CUDA build of torch that sees the GPU" 0 -
fi
if [ $have_benchmark = ON ] && [ -x "$bin_bench" ]; then
    long_cases='-(eig_syevd_all_f32|eig_syevd_all_f64|eig_syevdx_bottom128_f32)/11008'
    [ "${LORANULL_GPU_CHECK_LONG:-0}" = 1 ] && long_cases='.*'
    run_step bench_cuda 270 "$out/bench.log" "$bin_bench" --benchmark_min_time=0.2 --benchmark_filter="$long_cases" \
        --benchmark_out="$out/bench.json" --benchmark_out_format=json || failed=1
    row bench_cuda "$step_status" "$step_seconds" bench.log
elif [ $have_benchmark = ON ]; then
    row bench_cuda "not built" 0 build.log
    failed=1
else
    row bench_cuda "skipped: Google Benchmark not in $deps (scripts/vendor-deps.sh)" 0 -
fi

# --- the LLaMA-2-7B-shaped build (LORANULL_GPU_CHECK_7B=1) -----------------------
if [ "${LORANULL_GPU_CHECK_7B:-0}" = 1 ]; then
    work=${LORANULL_GPU_WORK:-/tmp/loranull-gpu-work}
    mkdir -p "$work"
    if [ ! -f "$work/llama-7b/config.json" ]; then
        run_step "make 7B checkpoint" 300 "$out/make_7b.log" python3 "$repo/bench/make_llama_checkpoint.py" \
            "$work/llama-7b" --dim 4096 --layers 32 --heads 32 --kv-heads 32 --hidden 11008 --vocab 32000 \
            --dtype bf16 --shards 2 --calib "$work/calib-256x2048.safetensors" --samples 256 --seq-len 2048 || failed=1
        row "make LLaMA-2-7B-shaped checkpoint (BF16, random)" "$step_status" "$step_seconds" make_7b.log
    fi
    if [ -x "$bin_builder" ] && [ -f "$work/llama-7b/config.json" ]; then
        rm -rf "$work/out-7b"
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 >"$out/device_memory_7b.csv" 2>/dev/null &
        smi=$!
        run_step "loranull-build 7B --device cuda" 600 "$out/build_7b.log" "$bin_builder" --model "$work/llama-7b" \
            --calib "$work/calib-256x2048.safetensors" --method lora-null --rank 128 --device cuda \
            --out "$work/out-7b" || failed=1
        kill $smi 2>/dev/null
        cp "$work/out-7b/report.json" "$out/report_7b.json" 2>/dev/null
        peak_smi=$(sort -n "$out/device_memory_7b.csv" 2>/dev/null | tail -1)
        row "loranull-build LLaMA-2-7B shape, 256 x 2048 tokens, --device cuda" \
            "$step_status; nvidia-smi peak ${peak_smi:-?} MiB; $(grep -E '^time|peak device' "$out/build_7b.log" | tr '\n' ' ')" \
            "$step_seconds" build_7b.log
    else
        row "loranull-build 7B" "not run: no loranull-build or no checkpoint" 0 -
    fi
fi

# --- ctest: the same tests through their ctest registration, if time is left ----
if [ $mode = cmake ] && [ -x "$bin_parity" ] && [ "$(remaining)" -gt 60 ]; then
    run_step "ctest -L gpu" 120 "$out/ctest.log" ctest --test-dir "$build" -L gpu -j 4 --timeout 100 --output-on-failure ||
        failed=1
    row "ctest -L gpu" "$step_status: $(grep -E 'tests passed|tests failed' "$out/ctest.log" | tail -1)" "$step_seconds" ctest.log
fi

# --- summary ----------------------------------------------------------------------
{
    ok_steps=$(printf '%s\n' "${rows[@]}" | grep -c '| ok')
    if [ $failed = 0 ]; then verdict=PASS; else verdict=FAIL; fi
    echo "$verdict: ${ok_steps} of ${#rows[@]} steps ok in $(elapsed)s (budget ${budget}s); details in $out/*.log"
    echo
    echo "# GPU check, $(date -u +%Y-%m-%d)"
    echo
    echo "- GPU: $gpu_name (built for sm_$CUDA_ARCH)"
    echo "- CUDA: $(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*' | head -1)"
    echo "- commit: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$repo" diff --quiet 2>/dev/null || echo ' (with local changes)')"
    echo "- build: $mode; total $(elapsed)s of a ${budget}s budget"
    echo
    echo "| step | result | seconds | log |"
    echo "|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    if [ -f "$out/test_cuda_parity.log" ] && grep -qE "ERROR|FAILED|CHECK.*is NOT correct" "$out/test_cuda_parity.log"; then
        echo
        echo "## First parity failures"
        echo
        echo '```'
        grep -B2 -A6 -m5 "ERROR:" "$out/test_cuda_parity.log" | head -60
        echo '```'
    fi
    if [ -f "$out/bench_llama.log" ] || [ -f "$out/pytorch_llama_cuda.log" ]; then
        echo
        echo "## LLaMA training step on the GPU (wall time per step, float32, seq 256)"
        echo
        echo "| benchmark | time | iterations | counters |"
        echo "|---|---|---|---|"
        [ -f "$out/bench_llama.log" ] && awk '/^llama_train_step/ {
                 counters = "";
                 for (i = 7; i <= NF; i++) counters = counters " " $i;
                 printf "| %s | %s %s | %s |%s |\n", $1, $2, $3, $6, counters
             }' "$out/bench_llama.log"
        [ -f "$out/bench_llama.log" ] && grep -E "^(no CUDA device|bench_llama_cuda:)" "$out/bench_llama.log" | sed 's/^/    /'
        if [ -f "$out/pytorch_llama_cuda.log" ]; then
            echo
            echo "PyTorch eager on the same GPU (peer):"
            echo
            echo '```'
            cat "$out/pytorch_llama_cuda.log"
            echo '```'
        fi
    fi
    if [ -f "$out/bench.log" ]; then
        echo
        echo "## Benchmarks (device time per iteration, CUDA events)"
        echo
        echo "| benchmark | time | iterations | counters |"
        echo "|---|---|---|---|"
        # Google Benchmark console lines: NAME TIME UNIT CPU UNIT ITERATIONS key=value...
        awk '/^(cov_|peer_|eig_|rsvd_)/ {
                 counters = "";
                 for (i = 7; i <= NF; i++) counters = counters " " $i;
                 printf "| %s | %s %s | %s |%s |\n", $1, $2, $3, $6, counters
             }' "$out/bench.log"
        grep -E "^(no CUDA device|bench_cuda:)" "$out/bench.log" | sed 's/^/    /'
    fi
} >"$summary"
cat "$summary"
exit $failed
