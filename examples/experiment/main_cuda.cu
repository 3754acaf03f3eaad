// loranull-experiment --device cuda: the same pipeline on the CUDA backend
// (model kernels in backend/cuda/nn_kernels.hpp, cuBLAS products, cuSOLVER
// decompositions). A separate translation unit because only .cu files may
// include the CUDA backend (DESIGN.md); it never includes Eigen.

#include <loranull/backend/cuda/cuda_backend.hpp>

#include "pipeline.hpp"

namespace experiment {

int run_experiment_cuda(const Args& args) {
    loranull::require(loranull::cuda_device_count() > 0, "options",
                      "--device cuda: no CUDA device found (no GPU, or the driver is missing or too old); "
                      "use --device cpu");
    loranull::CudaBackend gpu;
    return run_experiment(gpu, args);
}

}  // namespace experiment
