// The GPU half of the neural-network parity tests (see gpu_nn_ops.hpp): each
// NnBackend kernel of CudaBackend on uploaded inputs, results downloaded; and
// the whole model through model_run.hpp. Compiled by nvcc; includes no Eigen.
#include "gpu_nn_ops.hpp"

#include <loranull/backend/cuda/cuda_backend.hpp>

namespace gpu::nn {

using loranull::CudaBackend;
using loranull::DeviceMatrix;

namespace {

/// One backend for the process, never destroyed (as in gpu_ops.cu: no library
/// handle teardown during the CUDA runtime's own shutdown). A second
/// CudaBackend beside gpu_ops.cu's: each has its own stream, and nothing is
/// shared between the two.
CudaBackend& backend() {
    static CudaBackend* instance = new CudaBackend(0);
    return *instance;
}

template <class T>
DeviceMatrix<T> up(const HostMatrix<T>& a) {
    return backend().upload(a);
}

template <class T>
HostMatrix<T> down(const DeviceMatrix<T>& a) {
    return backend().download(a);
}

}  // namespace

template <class T>
HostMatrix<T> embedding_forward(const HostMatrix<T>& table, const Tokens& tokens) {
    return down(backend().embedding_forward(up(table), tokens));
}

template <class T>
HostMatrix<T> embedding_backward(const HostMatrix<T>& d_table, const HostMatrix<T>& dx, const Tokens& tokens) {
    auto d = up(d_table);
    backend().embedding_backward(d, up(dx), tokens);
    return down(d);
}

template <class T>
Rmsnorm<T> rmsnorm_forward(const HostMatrix<T>& x, const HostMatrix<T>& gain, T eps) {
    DeviceMatrix<T> rstd;  // empty: the kernel allocates it
    auto y = backend().rmsnorm_forward(up(x), up(gain), eps, rstd);
    return {down(y), down(rstd)};
}

template <class T>
RmsnormGrad<T> rmsnorm_backward(const HostMatrix<T>& dy, const HostMatrix<T>& x, const HostMatrix<T>& gain,
                                const HostMatrix<T>& rstd, const HostMatrix<T>& d_gain) {
    auto dg = up(d_gain);
    auto dx = backend().rmsnorm_backward(up(dy), up(x), up(gain), up(rstd), dg);
    return {down(dx), down(dg)};
}

template <class T>
HostMatrix<T> rope(const HostMatrix<T>& x, Index heads, Index head_dim, Index seq_len, double theta, int direction) {
    auto d = up(x);
    backend().rope(d, heads, head_dim, seq_len, theta, direction);
    return down(d);
}

template <class T>
Attention<T> attention_forward(const HostMatrix<T>& q, const HostMatrix<T>& k, const HostMatrix<T>& v,
                               const AttentionShape& shape) {
    // probs starts with a wrong shape: the kernel must reallocate it.
    DeviceMatrix<T> probs = backend().zeros<T>(1, 1);
    auto out = backend().attention_forward(up(q), up(k), up(v), shape, probs);
    return {down(out), down(probs)};
}

template <class T>
AttentionGrad<T> attention_backward(const HostMatrix<T>& d_out, const HostMatrix<T>& q, const HostMatrix<T>& k,
                                    const HostMatrix<T>& v, const HostMatrix<T>& probs, const AttentionShape& shape) {
    DeviceMatrix<T> dq, dk, dv;
    backend().attention_backward(up(d_out), up(q), up(k), up(v), up(probs), shape, dq, dk, dv);
    return {down(dq), down(dk), down(dv)};
}

template <class T>
HostMatrix<T> swiglu_forward(const HostMatrix<T>& gate, const HostMatrix<T>& up_) {
    return down(backend().swiglu_forward(up(gate), up(up_)));
}

template <class T>
SwigluGrad<T> swiglu_backward(const HostMatrix<T>& dh, const HostMatrix<T>& gate, const HostMatrix<T>& up_) {
    DeviceMatrix<T> d_gate, d_up;
    backend().swiglu_backward(up(dh), up(gate), up(up_), d_gate, d_up);
    return {down(d_gate), down(d_up)};
}

template <class T>
CrossEntropy<T> cross_entropy_forward(const HostMatrix<T>& logits, const Tokens& targets) {
    DeviceMatrix<T> probs;
    const double loss = backend().cross_entropy_forward(up(logits), targets, probs);
    return {loss, down(probs)};
}

template <class T>
HostMatrix<T> cross_entropy_backward(const HostMatrix<T>& probs, const Tokens& targets) {
    return down(backend().cross_entropy_backward(up(probs), targets));
}

template <class T>
AdamWState<T> adamw_update(const AdamWState<T>& state, const HostMatrix<T>& grad, double lr, double beta1,
                           double beta2, double eps, double weight_decay, long step) {
    auto param = up(state.param), m = up(state.m), v = up(state.v);
    backend().adamw_update(param, up(grad), m, v, lr, beta1, beta2, eps, weight_decay, step);
    return {down(param), down(m), down(v)};
}

template <class T>
ModelRun<T> run_model(const ModelSpec<T>& spec, const TrainingSpec& training) {
    return run_model(backend(), spec, training);
}

#define LORANULL_GPU_NN_OPS_INSTANTIATE(T)                                                                      \
    template HostMatrix<T> embedding_forward<T>(const HostMatrix<T>&, const Tokens&);                           \
    template HostMatrix<T> embedding_backward<T>(const HostMatrix<T>&, const HostMatrix<T>&, const Tokens&);    \
    template Rmsnorm<T> rmsnorm_forward<T>(const HostMatrix<T>&, const HostMatrix<T>&, T);                      \
    template RmsnormGrad<T> rmsnorm_backward<T>(const HostMatrix<T>&, const HostMatrix<T>&, const HostMatrix<T>&, \
                                                const HostMatrix<T>&, const HostMatrix<T>&);                    \
    template HostMatrix<T> rope<T>(const HostMatrix<T>&, Index, Index, Index, double, int);                    \
    template Attention<T> attention_forward<T>(const HostMatrix<T>&, const HostMatrix<T>&, const HostMatrix<T>&, \
                                               const AttentionShape&);                                          \
    template AttentionGrad<T> attention_backward<T>(const HostMatrix<T>&, const HostMatrix<T>&, const HostMatrix<T>&, \
                                                    const HostMatrix<T>&, const HostMatrix<T>&, const AttentionShape&); \
    template HostMatrix<T> swiglu_forward<T>(const HostMatrix<T>&, const HostMatrix<T>&);                      \
    template SwigluGrad<T> swiglu_backward<T>(const HostMatrix<T>&, const HostMatrix<T>&, const HostMatrix<T>&); \
    template CrossEntropy<T> cross_entropy_forward<T>(const HostMatrix<T>&, const Tokens&);                     \
    template HostMatrix<T> cross_entropy_backward<T>(const HostMatrix<T>&, const Tokens&);                      \
    template AdamWState<T> adamw_update<T>(const AdamWState<T>&, const HostMatrix<T>&, double, double, double,  \
                                           double, double, long);                                               \
    template ModelRun<T> run_model<T>(const ModelSpec<T>&, const TrainingSpec&);

LORANULL_GPU_NN_OPS_INSTANTIATE(float)
LORANULL_GPU_NN_OPS_INSTANTIATE(double)

}  // namespace gpu::nn
