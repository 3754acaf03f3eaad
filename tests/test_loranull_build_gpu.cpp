// The GPU suite's half of loranull-build's tests: the CUDA builder against
// the CPU builder on the sharded F32 checkpoint of build_fixtures.hpp, in one
// process and under mpirun -np 2. Labelled gpu; without a GPU (or without
// nvcc) each case checks the documented refusal and says "no CUDA device: ",
// which ctest reports as Skipped. scripts/gpu-check.sh runs it on a GPU.
#include <doctest/doctest.h>

#include "build_fixtures.hpp"

TEST_CASE("--device cuda: the CUDA builder gives the CPU builder's adapters, or says why it cannot run") {
    // Where nvcc built the CUDA builder and a GPU is present, this is the
    // CPU-vs-GPU parity of the whole build (scripts/gpu-check.sh runs it there);
    // elsewhere the refusal must be the documented one.
    const Fixture& fx = fixture();
    const std::string common = "--model " + q(fx.a_f32) + " --calib " + q(fx.calib_a) + " --method lora-null --rank 4 ";
    const Result gpu = run(common + "--device cuda --out " + q(dir() / "device_cuda"));
    if (gpu.status != 0) {
        INFO(gpu.err);
        CHECK(line_count(gpu.err) == 1);
        const bool without_nvcc = gpu.status == 2 && gpu.err.find("built without CUDA") != std::string::npos;
        const bool without_gpu = gpu.status == 1 && gpu.err.find("no CUDA device found") != std::string::npos;
        CHECK((without_nvcc || without_gpu));
        CHECK(!fs::exists(dir() / "device_cuda"));
        MESSAGE("no CUDA device: the CUDA builder's parity was not run (", std::string(without_nvcc ? "built without nvcc" : "no GPU"), ")");
        return;
    }
    const Result cpu_run = run(common + "--out " + q(dir() / "device_cpu"));
    REQUIRE(cpu_run.status == 0);
    check_cuda_matches_cpu(dir() / "device_cuda", dir() / "device_cpu");
}


#ifdef LORANULL_MPIEXEC
TEST_CASE("mpirun -np 2 --device cuda: the CPU builder's adapters, or one refusal on every rank") {
    // On a machine with one GPU both ranks share it and sum through the host
    // (MPI); with a GPU per rank, NCCL sums on the devices. scripts/gpu-check.sh
    // runs this where a GPU and mpirun are both present.
    const Fixture& fx = fixture();
    const std::string common = "--model " + q(fx.a_f32) + " --calib " + q(fx.calib_a) + " --method lora-null --rank 4 ";
    const fs::path out = dir() / "mpi_device_cuda";
    const Result gpu = mpirun_build(2, common + "--device cuda --out " + q(out));
    if (gpu.status != 0) {
        INFO(gpu.err);
        const bool without_nvcc = gpu.status == 2 && gpu.err.find("built without CUDA") != std::string::npos;
        const bool without_gpu = gpu.status == 1 && gpu.err.find("no CUDA device found") != std::string::npos;
        CHECK((without_nvcc || without_gpu));
        if (without_gpu) CHECK(gpu.err.find("(rank 0 of 2)") != std::string::npos);  // agreed, not aborted
        CHECK(!fs::exists(out));
        MESSAGE("no CUDA device: the 2-rank CUDA builder's parity was not run");
        return;
    }
    const fs::path cpu_out = dir() / "mpi_device_cpu";
    REQUIRE(run(common + "--out " + q(cpu_out)).status == 0);
    check_cuda_matches_cpu(out, cpu_out);
}
#endif  // LORANULL_MPIEXEC
