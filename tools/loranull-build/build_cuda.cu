// loranull-build --device cuda: the same AdapterBuilder on the CUDA backend
// (the forward through backend/cuda/nn_kernels.hpp, covariances by cuBLAS
// syrk, null spaces by cuSOLVER syevdx, the methods on the device; only the
// outputs come back). A translation unit of its own because only .cu files
// include the CUDA backend; it never includes Eigen. Compiled whenever nvcc is
// found; it has not run on a GPU yet (docs/loranull-build.md).
#include <loranull/backend/cuda/cuda_backend.hpp>
#include <loranull/pipeline/adapter_builder.hpp>

#include "build_device.hpp"

namespace loranull::tools::build {

pipeline::BuildResult run_on_cuda(const pipeline::BuildOptions& options, const pipeline::BuildProgress& progress) {
    if (cuda_device_count() == 0)
        pipeline::refuse_input("--device cuda: no CUDA device found (no GPU, or the driver is missing or too old); "
                               "use --device cpu");
    CudaBackend gpu;
    return pipeline::AdapterBuilder<CudaBackend>(gpu, options, progress).run();
}

}  // namespace loranull::tools::build
