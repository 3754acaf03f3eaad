#pragma once
// The builder on the device and processes the user chose: the CPU here, the
// GPU in build_cuda.cu (compiled only when nvcc is found: LORANULL_BUILD_CUDA);
// one process, or one rank of an mpirun job (a binary built with MPI:
// LORANULL_HAS_MPI).

#include <string>

#include <loranull/pipeline/build_options.hpp>

namespace loranull::pipeline {
struct BuildProgress;
struct BuildResult;
}  // namespace loranull::pipeline

namespace loranull::parallel {
class MpiCommunicator;
}  // namespace loranull::parallel

namespace loranull::tools::build {

/// AdapterBuilder<CudaBackend>(options).run(); defined in build_cuda.cu. With
/// `world` (this process is one of an mpirun job): one GPU per rank of each
/// machine, covariances summed by NCCL where the binary has it, else by MPI
/// through the host.
pipeline::BuildResult run_on_cuda(const pipeline::BuildOptions& options, const pipeline::BuildProgress& progress,
                                  const parallel::MpiCommunicator* world);

/// Whether this binary holds the CUDA builder.
constexpr bool has_cuda_builder() {
#ifdef LORANULL_BUILD_CUDA
    return true;
#else
    return false;
#endif
}

/// Whether this binary can run as one rank of many (mpirun).
constexpr bool has_mpi() {
#ifdef LORANULL_HAS_MPI
    return true;
#else
    return false;
#endif
}

}  // namespace loranull::tools::build
