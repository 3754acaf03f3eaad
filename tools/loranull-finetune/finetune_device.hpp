#pragma once
// The fine-tuning on the device the user chose: the CPU in main.cpp, the GPU
// in finetune_cuda.cu (compiled only when nvcc is found: LORANULL_FINETUNE_CUDA).

#include <loranull/pipeline/finetune_data.hpp>
#include <loranull/pipeline/finetune_options.hpp>

namespace loranull::pipeline {
struct FinetuneProgress;
struct FinetuneResult;
}  // namespace loranull::pipeline

namespace loranull::parallel {
class MpiCommunicator;
}  // namespace loranull::parallel

namespace loranull::tools::finetune {

/// Finetuner<CudaBackend>(...).run(); defined in finetune_cuda.cu. With
/// `world` (one rank of an mpirun job): one GPU per rank of each machine, the
/// gradients summed by MPI through the host (they are the adapters' only).
pipeline::FinetuneResult run_on_cuda(const pipeline::FinetuneOptions& options, const pipeline::FinetuneData& data,
                                     const pipeline::FinetuneProgress& progress, const parallel::MpiCommunicator* world);

}  // namespace loranull::tools::finetune
