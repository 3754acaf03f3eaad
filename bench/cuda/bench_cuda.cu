// GPU benchmarks of the CUDA backend, each beside the peer a user would call
// instead, timed with CUDA events on the backend's stream (Google Benchmark's
// manual time, so launch overhead and host work between iterations are not
// counted twice):
//
//   covariance  n x n update from n x T activations, n = 4096 and 11008,
//               T = 4096 tokens:
//                 cov_syrk_f32       CudaBackend::syrk_lower, cublasSsyrk
//                 cov_syrk_f32_to_f64  float activations into the default
//                                    double accumulator (convert + cublasDsyrk)
//                 cov_tensor_core_bf16 syrk_lower_tensor_core: bf16 in, fp32
//                                    accumulation, blocked cublasGemmEx
//                 peer_gemm_f32      cublasSgemm X X^T, the full product
//                 peer_gemm_bf16     cublasGemmEx X X^T (bf16 in, fp32 out)
//               counters: TFLOP/s (flops the routine executes: n^2 T for a
//               syrk, 2 n^2 T for a gemm) and cov_TFLOP/s (n^2 T / time: the
//               useful covariance work, comparable across rows).
//   eigen       n = 4096 and 11008, fp32 and fp64: syevdx_bottom128
//               (symmetric_eigen_range(C, 0, 128), what null_space runs)
//               against syevd_all (symmetric_eigen, every pair).
//   rsvd        A 11008 x 4096 (an MLP weight's shape), k = 128, p = 10,
//               q = 2: loranull::randomized_svd against cusolverDnXgesvdr with
//               the same k, p, q; counter sigma_rel_diff = max relative
//               difference of the k singular values of the two.
//
// "Measured peak": the peer_gemm rows at the largest shape are the reference
// throughput for each input type on the machine that runs this.
//
// Without a CUDA device the program says so and exits 0.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <utility>

#include <loranull/backend/cuda/cuda_backend.hpp>
#include <loranull/linalg/svd.hpp>

namespace {

using loranull::CudaBackend;
using loranull::DeviceMatrix;
using loranull::Index;
namespace detail = loranull::cuda_detail;

/// Never destroyed (see tests/cuda/gpu_backend.hpp): no handle teardown at exit.
CudaBackend& backend() {
    static CudaBackend* instance = new CudaBackend(0);
    return *instance;
}

/// Elapsed device time between two events recorded on the backend's stream.
class EventTimer {
public:
    EventTimer() {
        LORANULL_CUDA_CHECK(cudaEventCreate(&start_), "bench");
        LORANULL_CUDA_CHECK(cudaEventCreate(&stop_), "bench");
    }
    ~EventTimer() {
        (void)cudaEventDestroy(start_);
        (void)cudaEventDestroy(stop_);
    }
    EventTimer(const EventTimer&) = delete;
    EventTimer& operator=(const EventTimer&) = delete;

    void start() { LORANULL_CUDA_CHECK(cudaEventRecord(start_, backend().stream()), "bench"); }
    /// Records the stop event, waits for it, returns seconds.
    double stop() {
        LORANULL_CUDA_CHECK(cudaEventRecord(stop_, backend().stream()), "bench");
        LORANULL_CUDA_CHECK(cudaEventSynchronize(stop_), "bench");
        float ms = 0;
        LORANULL_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_), "bench");
        return static_cast<double>(ms) * 1e-3;
    }

private:
    cudaEvent_t start_ = nullptr;
    cudaEvent_t stop_ = nullptr;
};

/// Uniform [-1, 1) from a counter-based hash (splitmix64 of seed + index):
/// random data made on the device, no cuRAND, no host transfer.
template <class T>
struct HashUniform {
    T* out;
    std::uint64_t seed;
    __device__ void operator()(Index k) const {
        std::uint64_t z = seed + 0x9E3779B97F4A7C15ull * static_cast<std::uint64_t>(k + 1);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        out[k] = static_cast<T>(static_cast<double>(z >> 11) * 0x1.0p-52 - 1.0);
    }
};

template <class T>
DeviceMatrix<T> random_uniform(Index rows, Index cols, std::uint64_t seed) {
    DeviceMatrix<T> m = backend().allocate<T>(rows, cols);
    detail::for_each_index(m.size(), HashUniform<T>{m.data(), seed}, backend().stream(), "bench");
    return m;
}

/// A covariance-like symmetric PSD matrix: C = X X^T / n + I, X n x n uniform.
template <class T>
DeviceMatrix<T> covariance_like(Index n) {
    CudaBackend& b = backend();
    const DeviceMatrix<T> x = random_uniform<T>(n, n, 11);
    DeviceMatrix<T> c = b.zeros<T>(n, n);
    b.syrk_lower(T(1) / T(n), x, c);
    b.symmetrize_lower(c);
    b.add_to_diagonal(c, T(1));
    return c;
}

/// Runs `body` once per iteration between two events.
template <class Body>
void timed_loop(benchmark::State& state, Body&& body) {
    EventTimer timer;
    double total = 0;
    for (auto _ : state) {
        timer.start();
        body();
        const double seconds = timer.stop();
        state.SetIterationTime(seconds);
        total += seconds;
    }
    state.counters["seconds_per_iter"] = total / static_cast<double>(std::max<std::int64_t>(state.iterations(), 1));
}

void set_flop_counters(benchmark::State& state, double executed_flops, double covariance_flops) {
    const double seconds = state.counters["seconds_per_iter"];
    state.counters["TFLOP/s"] = executed_flops / seconds * 1e-12;
    state.counters["cov_TFLOP/s"] = covariance_flops / seconds * 1e-12;
}

// --- covariance ---------------------------------------------------------------

constexpr Index tokens = 4096;

void cov_syrk_f32(benchmark::State& state) {
    const Index n = state.range(0);
    CudaBackend& b = backend();
    const auto x = random_uniform<float>(n, tokens, 1);
    auto c = b.zeros<float>(n, n);
    timed_loop(state, [&] { b.syrk_lower(1.0f, x, c); });
    const double flops = double(n) * double(n) * double(tokens);
    set_flop_counters(state, flops, flops);
}

void cov_syrk_f32_to_f64(benchmark::State& state) {
    const Index n = state.range(0);
    CudaBackend& b = backend();
    const auto x = random_uniform<float>(n, tokens, 1);
    auto c = b.zeros<double>(n, n);
    timed_loop(state, [&] { b.syrk_lower(1.0, x, c); });
    const double flops = double(n) * double(n) * double(tokens);
    set_flop_counters(state, flops, flops);
}

void cov_tensor_core_bf16(benchmark::State& state) {
    const Index n = state.range(0);
    CudaBackend& b = backend();
    const auto x = b.convert<__nv_bfloat16>(random_uniform<float>(n, tokens, 1));
    auto c = b.zeros<float>(n, n);
    constexpr Index block = 1024;
    timed_loop(state, [&] { b.syrk_lower_tensor_core(1.0f, x, c, block); });
    // Executed: each block column J computes (n - J0) x width x T products.
    double executed = 0;
    for (Index j0 = 0; j0 < n; j0 += block) executed += 2.0 * double(n - j0) * double(std::min(block, n - j0)) * double(tokens);
    set_flop_counters(state, executed, double(n) * double(n) * double(tokens));
}

void peer_gemm_f32(benchmark::State& state) {
    const Index n = state.range(0);
    CudaBackend& b = backend();
    const auto x = random_uniform<float>(n, tokens, 1);
    auto c = b.zeros<float>(n, n);
    const float one = 1.0f;
    const int in = int(n), ik = int(tokens);
    timed_loop(state, [&] {
        LORANULL_CUBLAS_CHECK(cublasSgemm(b.cublas(), CUBLAS_OP_N, CUBLAS_OP_T, in, in, ik, &one, x.data(), in, x.data(),
                                          in, &one, c.data(), in),
                              "bench");
    });
    set_flop_counters(state, 2.0 * double(n) * double(n) * double(tokens), double(n) * double(n) * double(tokens));
}

void peer_gemm_bf16(benchmark::State& state) {
    const Index n = state.range(0);
    CudaBackend& b = backend();
    const auto x = b.convert<__nv_bfloat16>(random_uniform<float>(n, tokens, 1));
    auto c = b.zeros<float>(n, n);
    const float one = 1.0f;
    const int in = int(n), ik = int(tokens);
    timed_loop(state, [&] {
        LORANULL_CUBLAS_CHECK(cublasGemmEx(b.cublas(), CUBLAS_OP_N, CUBLAS_OP_T, in, in, ik, &one, x.data(), CUDA_R_16BF,
                                           in, x.data(), CUDA_R_16BF, in, &one, c.data(), CUDA_R_32F, in,
                                           CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                              "bench");
    });
    set_flop_counters(state, 2.0 * double(n) * double(n) * double(tokens), double(n) * double(n) * double(tokens));
}

// --- eigensolvers -----------------------------------------------------------------

template <class T>
void syevdx_bottom128(benchmark::State& state) {
    const Index n = state.range(0);
    CudaBackend& b = backend();
    const auto c = covariance_like<T>(n);
    timed_loop(state, [&] { benchmark::DoNotOptimize(b.symmetric_eigen_range(c, 0, 128)); });
    state.counters["n"] = double(n);
}

template <class T>
void syevd_all(benchmark::State& state) {
    const Index n = state.range(0);
    CudaBackend& b = backend();
    const auto c = covariance_like<T>(n);
    timed_loop(state, [&] { benchmark::DoNotOptimize(b.symmetric_eigen(c)); });
    state.counters["n"] = double(n);
}

// --- randomized SVD ---------------------------------------------------------------

constexpr Index rsvd_m = 11008, rsvd_n = 4096, rsvd_k = 128, rsvd_p = 10, rsvd_q = 2;

/// A (m x n) = B1 diag(0.98^j) B2 + noise: a decaying spectrum over 512
/// directions, so that the top 128 are meaningful.
template <class T>
DeviceMatrix<T> rsvd_input() {
    CudaBackend& b = backend();
    constexpr Index r = 512;
    auto b1 = random_uniform<T>(rsvd_m, r, 21);
    const auto b2 = random_uniform<T>(r, rsvd_n, 22);
    std::vector<T> decay(r);
    for (Index j = 0; j < r; ++j) decay[std::size_t(j)] = static_cast<T>(std::pow(0.98, double(j)));
    b.scale_columns(b1, decay);
    auto a = random_uniform<T>(rsvd_m, rsvd_n, 23);
    b.scale(T(1e-3), a);
    b.gemm(loranull::Op::none, loranull::Op::none, T(1), b1, b2, T(1), a);
    return a;
}

template <class T>
std::vector<T> loranull_rsvd_values(const DeviceMatrix<T>& a) {
    loranull::RandomizedSvdOptions options;
    options.oversampling = rsvd_p;
    options.power_iterations = rsvd_q;
    options.seed = 1;
    return loranull::randomized_svd(backend(), a, rsvd_k, options).singular_values;
}

template <class T>
void rsvd_loranull(benchmark::State& state) {
    const auto a = rsvd_input<T>();
    timed_loop(state, [&] { benchmark::DoNotOptimize(loranull_rsvd_values(a)); });
}

template <class T>
void rsvd_cusolver_gesvdr(benchmark::State& state) {
    CudaBackend& b = backend();
    const auto a = rsvd_input<T>();
    const Index m = rsvd_m, n = rsvd_n;
    // Output sizes as in NVIDIA's gesvdr sample: U ldu x m, V ldv x n, S min(m, n).
    auto u = b.allocate<T>(m, m), v = b.allocate<T>(n, n), s = b.allocate<T>(std::min(m, n), 1);
    auto work_a = b.allocate<T>(m, n);  // gesvdr destroys its input
    constexpr cudaDataType type = detail::data_type<T>();
    cusolverDnParams_t params = nullptr;
    LORANULL_CUSOLVER_CHECK(cusolverDnCreateParams(&params), "bench");
    std::size_t device_bytes = 0, host_bytes = 0;
    LORANULL_CUSOLVER_CHECK(cusolverDnXgesvdr_bufferSize(b.cusolver(), params, 'S', 'S', m, n, rsvd_k, rsvd_p, rsvd_q,
                                                         type, work_a.data(), m, type, s.data(), type, u.data(), m,
                                                         type, v.data(), n, type, &device_bytes, &host_bytes),
                            "bench");
    detail::DeviceBuffer device_work(std::max<std::size_t>(device_bytes, 1), b.stream_handle());
    std::vector<unsigned char> host_work(std::max<std::size_t>(host_bytes, 1));
    detail::DeviceBuffer info_buffer(sizeof(int), b.stream_handle());
    int* info = static_cast<int*>(info_buffer.data());
    EventTimer timer;
    double total = 0;
    for (auto _ : state) {
        LORANULL_CUDA_CHECK(cudaMemcpyAsync(work_a.data(), a.data(), sizeof(T) * std::size_t(m * n),
                                            cudaMemcpyDeviceToDevice, b.stream()),
                            "bench");
        timer.start();
        LORANULL_CUSOLVER_CHECK(cusolverDnXgesvdr(b.cusolver(), params, 'S', 'S', m, n, rsvd_k, rsvd_p, rsvd_q, type,
                                                  work_a.data(), m, type, s.data(), type, u.data(), m, type, v.data(),
                                                  n, type, device_work.data(), device_bytes, host_work.data(),
                                                  host_bytes, info),
                                "bench");
        const double seconds = timer.stop();
        state.SetIterationTime(seconds);
        total += seconds;
    }
    detail::check_dev_info(info, b.stream(), "cusolverDnXgesvdr", "bench");
    (void)cusolverDnDestroyParams(params);
    state.counters["seconds_per_iter"] = total / double(std::max<std::int64_t>(state.iterations(), 1));
    // Agreement with loranull::randomized_svd at the same k, p, q.
    std::vector<T> theirs(static_cast<std::size_t>(rsvd_k));
    LORANULL_CUDA_CHECK(cudaMemcpyAsync(theirs.data(), s.data(), sizeof(T) * theirs.size(), cudaMemcpyDeviceToHost,
                                        b.stream()),
                        "bench");
    b.synchronize();
    const std::vector<T> ours = loranull_rsvd_values(a);
    double worst = 0;
    for (std::size_t i = 0; i < theirs.size(); ++i)
        worst = std::max(worst, std::abs(double(ours[i]) - double(theirs[i])) / std::max(1e-300, std::abs(double(theirs[i]))));
    state.counters["sigma_rel_diff"] = worst;
    state.counters["sigma_1"] = double(theirs.front());
    state.counters["sigma_k"] = double(theirs.back());
}

/// Everything registered here (not with BENCHMARK macros) so that nothing is
/// set up when there is no device.
void register_benchmarks() {
    for (Index n : {Index(4096), Index(11008)}) {
        benchmark::RegisterBenchmark("cov_syrk_f32", cov_syrk_f32)->Arg(n)->UseManualTime()->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark("cov_syrk_f32_to_f64", cov_syrk_f32_to_f64)->Arg(n)->UseManualTime()->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark("cov_tensor_core_bf16", cov_tensor_core_bf16)->Arg(n)->UseManualTime()->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark("peer_gemm_f32", peer_gemm_f32)->Arg(n)->UseManualTime()->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark("peer_gemm_bf16", peer_gemm_bf16)->Arg(n)->UseManualTime()->Unit(benchmark::kMillisecond);
    }
    // Eigensolvers: seconds per call at 11008, so a fixed, small iteration count.
    for (Index n : {Index(4096), Index(11008)}) {
        const int iterations = n <= 4096 ? 3 : 1;
        benchmark::RegisterBenchmark("eig_syevdx_bottom128_f32", syevdx_bottom128<float>)->Arg(n)->Iterations(iterations)->UseManualTime()->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark("eig_syevd_all_f32", syevd_all<float>)->Arg(n)->Iterations(iterations)->UseManualTime()->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark("eig_syevdx_bottom128_f64", syevdx_bottom128<double>)->Arg(n)->Iterations(iterations)->UseManualTime()->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark("eig_syevd_all_f64", syevd_all<double>)->Arg(n)->Iterations(iterations)->UseManualTime()->Unit(benchmark::kMillisecond);
    }
    benchmark::RegisterBenchmark("rsvd_loranull_f32", rsvd_loranull<float>)->UseManualTime()->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark("rsvd_cusolver_gesvdr_f32", rsvd_cusolver_gesvdr<float>)->UseManualTime()->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark("rsvd_loranull_f64", rsvd_loranull<double>)->UseManualTime()->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark("rsvd_cusolver_gesvdr_f64", rsvd_cusolver_gesvdr<double>)->UseManualTime()->Unit(benchmark::kMillisecond);
}

/// One small call of each cuSOLVER routine, so that library initialisation is
/// not charged to the first timed iteration.
void warm_up() {
    CudaBackend& b = backend();
    const auto c32 = covariance_like<float>(256);
    const auto c64 = covariance_like<double>(256);
    (void)b.symmetric_eigen(c32);
    (void)b.symmetric_eigen_range(c32, 0, 8);
    (void)b.symmetric_eigen(c64);
    (void)b.symmetric_eigen_range(c64, 0, 8);
    (void)b.thin_svd(random_uniform<float>(300, 200, 5));
    (void)b.thin_svd(random_uniform<double>(300, 200, 5));
    b.synchronize();
}

std::string device_description() {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return "CUDA device 0";
    return std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ", " +
           std::to_string(prop.multiProcessorCount) + " SMs, " +
           std::to_string(static_cast<long long>(double(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0))) + " GiB)";
}

}  // namespace

int main(int argc, char** argv) {
    if (loranull::cuda_device_count() == 0) {
        std::printf("no CUDA device: GPU benchmarks skipped\n");
        return 0;
    }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    try {
        benchmark::AddCustomContext("cuda_device", device_description());
        warm_up();
        register_benchmarks();
        benchmark::RunSpecifiedBenchmarks();
    } catch (const loranull::error& e) {
        std::fprintf(stderr, "bench_cuda: %s\n", e.what());
        benchmark::Shutdown();
        return 1;
    }
    benchmark::Shutdown();
    return 0;
}
