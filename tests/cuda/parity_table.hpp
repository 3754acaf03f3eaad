#pragma once
// THE table of CPU-vs-GPU parity cases, in the spirit of ggml's
// test-backend-ops: each case is described once, and both halves of the suite
// read it.
//
// A case is a struct (in parity_cases_*.hpp) with
//   title                          the doctest name (one test case per row and T)
//   Item<T>                        one input set: a label, host matrices, sizes
//   Result<T>                      what the computation brings back to the host
//   items<T>(b)                    the inputs, seeded, made on the host through
//                                  the reference backend b (CpuBackend); both
//                                  halves then receive the same host matrices
//   run<T>(b, item) -> Result<T>   the computation, a template over the backend,
//                                  instantiated on CpuBackend (the .cpp half) and
//                                  on CudaBackend (parity_gpu.cu) or the host
//                                  emulation of the GPU kernels (parity_emulated.cu)
//   check<T>(c, item, got, expected)  the tolerance rule, stated with eps(T) and
//                                  the sizes: c is parity::Check (parity_check.hpp)
// for T = float and double.
//
// Adding a primitive = adding one such struct and one line to a list below.
// This header and the case headers include no Eigen and no CUDA (only generic
// loranull headers), so the .cu half compiles without Eigen's solvers under
// nvcc (minutes and gigabytes otherwise): that is the compile-time split.
//
// Cases that are not a generic computation stay ordinary test cases, in
// test_cuda_gpu_only.cpp: the tensor-core covariance (CpuBackend has no 16-bit
// types), the error paths (each backend's messages name the backend: the CPU's
// are tested by its own suites), DeviceMatrix's value semantics and a backend
// on a missing device (CUDA-only objects).

#include "parity_cases_algorithms.hpp"
#include "parity_cases_decompositions.hpp"
#include "parity_cases_model.hpp"
#include "parity_cases_nn.hpp"
#include "parity_cases_primitives.hpp"

/// Cases that need the whole backend (backend.hpp's primitives and linalg):
/// run on CudaBackend only.
#define LORANULL_PARITY_LINALG_CASES(X)                                                                    \
    X(Storage) X(Gemm) X(SyrkLower) X(SyrkLowerMixed) X(Elementwise) X(SymmetricEigen) X(SymmetricEigenRange) \
    X(ThinSvd) X(ThinQ) X(DeviceInvariants) X(CovarianceAccumulator) X(SmallestLargestEigenpairs)            \
    X(SvdAlgorithms) X(NullSpaceCase) X(AddLowerSumOfSquares)

/// The whole LLaMA model (llama/ over every primitive): CudaBackend only. A
/// list of its own so that its CPU half compiles in a translation unit of its
/// own, in parallel with the linear-algebra one.
#define LORANULL_PARITY_MODEL_CASES(X) X(LlamaModelRun) X(FusedBlockCalibration)

/// Cases that need only the NN kernels (and upload, download, zeros): run on
/// CudaBackend and on the host emulation of its kernels.
#define LORANULL_PARITY_NN_CASES(X) X(Embedding) X(Rmsnorm) X(Rope) X(Attention) X(Swiglu) X(CrossEntropy) X(AdamWStep)

namespace parity {

/// The case run on the backend under test (the GPU, or its host emulation),
/// inputs uploaded and results downloaded. Defined in gpu_backend.hpp
/// (CudaBackend) and parity_emulated.cu (the host emulation); explicitly
/// instantiated for every case of the lists above in parity_gpu.cu and
/// parity_gpu_nn.cu, and for the NN cases in parity_emulated.cu.
template <class Case, class T>
typename Case::template Result<T> run_on_device(const typename Case::template Item<T>& item);

}  // namespace parity

/// The explicit instantiation of run_on_device for the row `Case`, float and
/// double (inside namespace parity, after run_on_device's definition).
#define LORANULL_PARITY_INSTANTIATE(Case)                                                       \
    template Case::Result<float> run_on_device<Case, float>(const Case::Item<float>&);           \
    template Case::Result<double> run_on_device<Case, double>(const Case::Item<double>&);
