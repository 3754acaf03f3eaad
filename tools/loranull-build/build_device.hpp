#pragma once
// The builder on the device the user chose: the CPU here, the GPU in
// build_cuda.cu (compiled only when nvcc is found: LORANULL_BUILD_CUDA).

#include <string>

#include <loranull/pipeline/build_options.hpp>

namespace loranull::pipeline {
struct BuildProgress;
struct BuildResult;
}  // namespace loranull::pipeline

namespace loranull::tools::build {

/// AdapterBuilder<CudaBackend>(options).run(); defined in build_cuda.cu.
pipeline::BuildResult run_on_cuda(const pipeline::BuildOptions& options, const pipeline::BuildProgress& progress);

/// Whether this binary holds the CUDA builder.
constexpr bool has_cuda_builder() {
#ifdef LORANULL_BUILD_CUDA
    return true;
#else
    return false;
#endif
}

}  // namespace loranull::tools::build
