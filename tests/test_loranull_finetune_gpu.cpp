// The GPU suite's half of loranull-finetune's tests: --device cuda against
// --device cpu on the LLaMA-3 fixture (same steps, same data), in one process
// and under mpirun -np 2. Labelled gpu; without a GPU (or without nvcc) each
// case checks the documented refusal and says "no CUDA device: ", which ctest
// reports as Skipped. scripts/gpu-check.sh runs it on a GPU.
#include "finetune_fixtures.hpp"

namespace {

/// The refusal where the CUDA path cannot run; true when it was that.
bool refused_without_gpu(const test::ToolResult& r, const fs::path& out) {
    if (r.status == 0) return false;
    INFO(r.err);
    const bool without_nvcc = r.status == 2 && r.err.find("built without CUDA") != std::string::npos;
    const bool without_gpu = r.status == 1 && r.err.find("no CUDA device found") != std::string::npos;
    CHECK((without_nvcc || without_gpu));
    CHECK(!fs::exists(out / "adapter"));
    MESSAGE("no CUDA device: loranull-finetune's CUDA parity was not run (",
            std::string(without_nvcc ? "built without nvcc" : "no GPU"), ")");
    return true;
}

std::string parity_args() {
    return common_args(built(family("llama-3"))) + "--data " + q(files().calib) +
           " --seq-len 12 --steps 4 --batch 2 --grad-accum 2 --lr 0.005 ";
}

}  // namespace

TEST_CASE("--device cuda: the CPU run's adapter and losses, or says why it cannot run") {
    const fs::path cuda_run = dir() / "cuda", cpu_run = dir() / "cpu";
    const auto gpu = finetune(parity_args() + "--device cuda --out " + q(cuda_run));
    if (refused_without_gpu(gpu, cuda_run)) return;
    REQUIRE_MESSAGE(gpu.status == 0, gpu.err);
    const auto cpu = finetune(parity_args() + "--out " + q(cpu_run));
    REQUIRE_MESSAGE(cpu.status == 0, cpu.err);
    // float32 on both, other summation orders in the products: 1e-4.
    check_same_run(cpu_run, cuda_run, 1e-4, 1e-4);
}

#ifdef LORANULL_MPIEXEC
TEST_CASE("mpirun -np 2 --device cuda: the CPU run's adapter, or the refusal") {
    const fs::path cuda_run = dir() / "mpi_cuda", cpu_run = dir() / "mpi_cpu";
    const auto gpu = test::mpirun(2, LORANULL_FINETUNE_PATH, parity_args() + "--device cuda --out " + q(cuda_run), dir());
    if (gpu.status != 0) {  // every rank refuses (exit 1 ends the job through MPI_Abort: the status is mpirun's)
        INFO(gpu.err);
        const bool refused = gpu.err.find("built without CUDA") != std::string::npos ||
                             gpu.err.find("no CUDA device found") != std::string::npos;
        CHECK(refused);
        CHECK(!fs::exists(cuda_run / "adapter"));
        MESSAGE("no CUDA device: loranull-finetune's 2-rank CUDA parity was not run");
        return;
    }
    const auto cpu = finetune(parity_args() + "--out " + q(cpu_run));
    REQUIRE_MESSAGE(cpu.status == 0, cpu.err);
    // float32 on both, other summation orders in the products: 1e-4.
    check_same_run(cpu_run, cuda_run, 1e-4, 1e-4);
}
#endif  // LORANULL_MPIEXEC
