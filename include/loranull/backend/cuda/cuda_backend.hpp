#pragma once
// The CUDA backend: the primitive set of backend.hpp on one NVIDIA GPU.
//
//   storage        DeviceMatrix<T> (device_matrix.hpp): stream-ordered
//                  cudaMallocAsync / cudaMemcpyAsync / cudaFreeAsync
//   products       cuBLAS: ?gemm, ?syrk (lower), ?geam (transposes); the
//                  tensor-core covariance through cublasGemmEx (bf16/fp16 in,
//                  fp32 accumulation)
//   decompositions cuSOLVER: cusolverDnXsyevd (all pairs), cusolverDnXsyevdx
//                  (index range), cusolverDnXgesvd (thin SVD; m < n through
//                  the SVD of A^T), ?geqrf + ?orgqr (thin Q)
//   elementwise    Thrust on the backend's stream (reductions), small
//                  grid-stride kernels (kernels.hpp) for the rest
//   NN kernels     embedding, RMSNorm, RoPE, causal GQA attention, SwiGLU,
//                  cross-entropy, AdamW, so that llama/ runs on the GPU
//
// Files, bottom to top (arrows point down only): check.hpp, device_matrix.hpp,
// kernels.hpp; nn_functors.hpp, nn_attention_functors.hpp, nn_launches.hpp;
// context.hpp (the state: stream, handles, workspace); then one CRTP base of
// CudaBackend per group of primitives: storage.hpp, products.hpp,
// decompositions.hpp, elementwise.hpp, nn_kernels.hpp. This header ties them
// together and is the one a user includes.
//
// One CudaBackend owns one non-blocking stream, one cuBLAS handle and one
// cuSOLVER handle bound to that stream, a growing cuSOLVER workspace and a
// devInfo word. Every call is enqueued on the stream; the host waits only
// where a result must reach it (download, reductions, eigen/singular values,
// devInfo checks). Every CUDA, cuBLAS and cuSOLVER status is checked and a
// failure throws loranull::error naming the entry point, the call and the
// status (check.hpp). Argument checks and their messages mirror CpuBackend,
// with "CudaBackend::" in place of "CpuBackend::".
//
// Precision: fp32 products are true fp32 (cuBLAS's default math mode, no
// TF32), so float results agree with the CPU's to float rounding.
//
// Include only from .cu translation units: this header pulls in the CUDA
// runtime, cuBLAS, cuSOLVER and Thrust, and never Eigen.

#include "loranull/backend/backend.hpp"
#include "loranull/backend/cuda/context.hpp"
#include "loranull/backend/cuda/decompositions.hpp"
#include "loranull/backend/cuda/device_matrix.hpp"
#include "loranull/backend/cuda/elementwise.hpp"
#include "loranull/backend/cuda/nn_kernels.hpp"
#include "loranull/backend/cuda/products.hpp"
#include "loranull/backend/cuda/storage.hpp"
#include "loranull/backend/nn.hpp"

namespace loranull {

/// The whole primitive set of backend.hpp, plus the neural-network kernels of
/// nn.hpp, each group from its CRTP base; the state is the CudaContext base.
class CudaBackend : public cuda_detail::CudaContext,
                    public CudaStorage<CudaBackend>,
                    public CudaProducts<CudaBackend>,
                    public CudaDecompositions<CudaBackend>,
                    public CudaElementwise<CudaBackend>,
                    public CudaNnKernels<CudaBackend, DeviceMatrix> {
public:
    /// Column-major, owning, stream-ordered device storage.
    template <class T>
    using Matrix = DeviceMatrix<T>;

    /// "cuda", for messages, files and benchmark labels.
    static constexpr const char* name() { return "cuda"; }
    /// Not host memory: data() is a device pointer (parallel/ stages it through the host for MPI).
    static constexpr bool host_memory = false;

    /// A backend on CUDA device `device` (0-based). Throws loranull::error when
    /// that device does not exist (no GPU, driver too old, ordinal too large).
    explicit CudaBackend(int device = 0) : CudaContext(device) {}
};

static_assert(Backend<CudaBackend>, "CudaBackend must provide the whole primitive set");
static_assert(NnBackend<CudaBackend>, "CudaBackend must provide every neural-network kernel");

}  // namespace loranull
