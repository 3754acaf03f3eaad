// The GPU half of the parity table (parity_table.hpp), linear-algebra cases:
// their run on CudaBackend (gpu_backend.hpp), inputs uploaded, results
// downloaded; and the device's description. Compiled by nvcc; includes no
// Eigen. The NN and model cases are in parity_gpu_nn.cu (compiled in parallel).
#include <cstdio>
#include <string>

#include "gpu_backend.hpp"
#include "parity_device.hpp"

namespace parity {

int device_count() { return loranull::cuda_device_count(); }

std::string device_description() {
    const int count = loranull::cuda_device_count();
    if (count == 0) return "no CUDA device";
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return "CUDA device 0 (properties unavailable)";
    int driver = 0, runtime = 0;
    (void)cudaDriverGetVersion(&driver);
    (void)cudaRuntimeGetVersion(&runtime);
    char text[512];
    std::snprintf(text, sizeof text, "%s (sm_%d%d, %.0f GiB), %d device(s), driver %d.%d, runtime %d.%d", prop.name,
                  prop.major, prop.minor, static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0), count,
                  driver / 1000, (driver % 1000) / 10, runtime / 1000, (runtime % 1000) / 10);
    return text;
}

LORANULL_PARITY_LINALG_CASES(LORANULL_PARITY_INSTANTIATE)

}  // namespace parity
