// loranull-build --device cuda: the same AdapterBuilder on the CUDA backend
// (the forward through backend/cuda/nn_kernels.hpp, covariances by cuBLAS
// syrk, null spaces by cuSOLVER syevdx, the methods on the device; only the
// outputs come back). A translation unit of its own because only .cu files
// include the CUDA backend; it never includes Eigen. Under mpirun, one GPU per
// rank and NCCL between them (LORANULL_HAS_NCCL), or MPI through the host.
// Compiled whenever nvcc is found; it has not run on a GPU yet
// (docs/loranull-build.md).
#include <loranull/backend/cuda/cuda_backend.hpp>
#include <loranull/pipeline/adapter_builder.hpp>
#ifdef LORANULL_HAS_MPI
#include <loranull/parallel/mpi_communicator.hpp>
#endif
#ifdef LORANULL_HAS_NCCL
#include <loranull/parallel/nccl_communicator.hpp>
#endif

#include <cstdint>
#include <cstdio>
#include <span>

#include "build_device.hpp"

namespace loranull::tools::build {

pipeline::BuildResult run_on_cuda(const pipeline::BuildOptions& options, const pipeline::BuildProgress& progress,
                                  [[maybe_unused]] const parallel::MpiCommunicator* world) {
    auto check_device = [] {
        if (cuda_device_count() == 0)
            pipeline::refuse_input("--device cuda: no CUDA device found (no GPU, or the driver is missing or too "
                                   "old); use --device cpu");
    };
#ifdef LORANULL_HAS_MPI
    if (world) {
        parallel::MpiCommunicator mpi = *world;
        pipeline::BuildRanks<parallel::MpiCommunicator> ranks(mpi);
        ranks.locally(check_device);  // a machine without a GPU stops every rank with the same line
        ranks.agree();
        // One GPU per rank of each machine; NCCL needs that, MPI through the
        // host works with more ranks than GPUs too (slowly: for tests).
        [[maybe_unused]] const auto [node_rank, node_size] = world->node_rank_and_size();
        const int device = node_rank % cuda_device_count();
        LORANULL_CUDA_CHECK(cudaSetDevice(device), "loranull-build --device cuda");  // NCCL joins the current device
        CudaBackend gpu(device);
#ifdef LORANULL_HAS_NCCL
        // NCCL wants a GPU of its own per rank: every rank must choose alike.
        std::int64_t short_of_gpus = node_size > cuda_device_count() ? 1 : 0;
        mpi.sum(std::span<std::int64_t>(&short_of_gpus, 1));
        if (short_of_gpus == 0) {
            parallel::NcclCommunicator nccl(*world);
            try {
                return pipeline::AdapterBuilder<CudaBackend, parallel::NcclCommunicator>(gpu, nccl, options, progress)
                    .run();
            } catch (const pipeline::SharedBuildError&) {
                throw;  // every rank unwinds: destroying the NCCL communicator is collective, and all are there
            } catch (const std::exception& e) {
                // This rank's error alone: ~NcclCommunicator would wait for peers
                // that wait in MPI for this rank. End the job first.
                std::fprintf(stderr, "loranull-build: error: %s\n", e.what());
                MPI_Abort(world->comm(), 1);
            }
        }
#endif
        return pipeline::AdapterBuilder<CudaBackend, parallel::MpiCommunicator>(gpu, mpi, options, progress).run();
    }
#endif
    check_device();
    CudaBackend gpu;
    return pipeline::AdapterBuilder<CudaBackend>(gpu, options, progress).run();
}

}  // namespace loranull::tools::build
