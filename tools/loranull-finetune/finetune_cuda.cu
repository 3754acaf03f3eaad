// loranull-finetune --device cuda: the same Finetuner on the CUDA backend (the
// model's forward and backward through backend/cuda/nn_kernels.hpp, AdamW on
// the device; the gradients of the adapters come to the host once a step to
// be summed over the ranks). A translation unit of its own because only .cu
// files include the CUDA backend. Compiled whenever nvcc is found; it has not
// run on a GPU yet (docs/loranull-finetune.md).
#include <loranull/backend/cuda/cuda_backend.hpp>
#include <loranull/pipeline/finetune.hpp>
#ifdef LORANULL_HAS_MPI
#include <loranull/parallel/mpi_communicator.hpp>
#endif

#include "finetune_device.hpp"

namespace loranull::tools::finetune {

pipeline::FinetuneResult run_on_cuda(const pipeline::FinetuneOptions& options, const pipeline::FinetuneData& data,
                                     const pipeline::FinetuneProgress& progress,
                                     [[maybe_unused]] const parallel::MpiCommunicator* world) {
    if (cuda_device_count() == 0)
        pipeline::refuse_input("--device cuda: no CUDA device found (no GPU, or the driver is missing or too old); use "
                               "--device cpu");
#ifdef LORANULL_HAS_MPI
    if (world) {
        const auto [node_rank, node_size] = world->node_rank_and_size();
        (void)node_size;
        const int device = node_rank % cuda_device_count();
        LORANULL_CUDA_CHECK(cudaSetDevice(device), "loranull-finetune --device cuda");
        CudaBackend gpu(device);
        parallel::MpiCommunicator mpi = *world;
        return pipeline::Finetuner<CudaBackend, parallel::MpiCommunicator>(gpu, mpi, options, data, progress).run();
    }
#endif
    CudaBackend gpu;
    parallel::SingleProcess alone;
    return pipeline::Finetuner<CudaBackend>(gpu, alone, options, data, progress).run();
}

}  // namespace loranull::tools::finetune
