#pragma once
// The GPU half of the neural-network parity tests (test_cuda_nn_parity.cpp):
// every NnBackend kernel of CudaBackend behind plain functions on host
// matrices, and a whole LlamaModel run (model_run.hpp) on the GPU. Defined in
// gpu_nn_ops.cu (nvcc, no Eigen). Like gpu_ops.hpp, this header names no CUDA
// and no Eigen type, so both compilers see the same declarations.
//
// tests/cuda/nn_host_emulation.cu implements the kernel functions a second
// way: the very same functors and launch sequences (nn_kernels.hpp) run by a
// host loop over host memory, so that the kernels' logic is checked against the
// CPU on a machine without a GPU (test_cuda_nn_emulated).
//
// T is float or double (explicitly instantiated).

#include <cstdint>
#include <vector>

#include <loranull/backend/nn.hpp>
#include <loranull/core/host_matrix.hpp>
#include <loranull/core/types.hpp>

#include "model_run.hpp"

namespace gpu::nn {

using loranull::AttentionShape;
using loranull::HostMatrix;
using loranull::Index;
using Tokens = std::vector<std::int32_t>;

template <class T> HostMatrix<T> embedding_forward(const HostMatrix<T>& table, const Tokens& tokens);
/// d_table after d_table(:, tokens[t]) += dx(:, t).
template <class T> HostMatrix<T> embedding_backward(const HostMatrix<T>& d_table, const HostMatrix<T>& dx, const Tokens& tokens);

template <class T>
struct Rmsnorm {
    HostMatrix<T> y, rstd;
};
template <class T> Rmsnorm<T> rmsnorm_forward(const HostMatrix<T>& x, const HostMatrix<T>& gain, T eps);

template <class T>
struct RmsnormGrad {
    HostMatrix<T> dx, d_gain;  // d_gain: the one passed in, accumulated into
};
template <class T>
RmsnormGrad<T> rmsnorm_backward(const HostMatrix<T>& dy, const HostMatrix<T>& x, const HostMatrix<T>& gain,
                                const HostMatrix<T>& rstd, const HostMatrix<T>& d_gain);

template <class T>
HostMatrix<T> rope(const HostMatrix<T>& x, Index heads, Index head_dim, Index seq_len, double theta, int direction);

template <class T>
struct Attention {
    HostMatrix<T> out, probs;
};
template <class T>
Attention<T> attention_forward(const HostMatrix<T>& q, const HostMatrix<T>& k, const HostMatrix<T>& v,
                               const AttentionShape& shape);

template <class T>
struct AttentionGrad {
    HostMatrix<T> dq, dk, dv;
};
template <class T>
AttentionGrad<T> attention_backward(const HostMatrix<T>& d_out, const HostMatrix<T>& q, const HostMatrix<T>& k,
                                    const HostMatrix<T>& v, const HostMatrix<T>& probs, const AttentionShape& shape);

template <class T> HostMatrix<T> swiglu_forward(const HostMatrix<T>& gate, const HostMatrix<T>& up);

template <class T>
struct SwigluGrad {
    HostMatrix<T> d_gate, d_up;
};
template <class T>
SwigluGrad<T> swiglu_backward(const HostMatrix<T>& dh, const HostMatrix<T>& gate, const HostMatrix<T>& up);

template <class T>
struct CrossEntropy {
    double loss = 0;
    HostMatrix<T> probs;
};
template <class T> CrossEntropy<T> cross_entropy_forward(const HostMatrix<T>& logits, const Tokens& targets);
template <class T> HostMatrix<T> cross_entropy_backward(const HostMatrix<T>& probs, const Tokens& targets);

template <class T>
struct AdamWState {
    HostMatrix<T> param, m, v;
};
/// One adamw_update on (param, m, v), returned after the step.
template <class T>
AdamWState<T> adamw_update(const AdamWState<T>& state, const HostMatrix<T>& grad, double lr, double beta1,
                           double beta2, double eps, double weight_decay, long step);

/// The whole model on the GPU (model_run.hpp's run_model on CudaBackend).
template <class T> ModelRun<T> run_model(const ModelSpec<T>& spec, const TrainingSpec& training);

}  // namespace gpu::nn
