// A stand-in for the GPU half of the NN kernel parity tests (gpu_nn_ops.hpp)
// that runs WITHOUT a GPU: each kernel's launch sequence (nn_kernels.hpp,
// cuda_nn::nn_raw) executes the very same __host__ __device__ functors, one
// index after another in a host loop, on host memory. Linked with
// test_cuda_nn_parity.cpp into test_cuda_nn_emulated, it checks the kernels'
// index arithmetic, layouts and math against the CPU kernels on any machine
// with nvcc.
//
// What it cannot check: the launch itself (grid-stride loop, stream order),
// device memory, the argument checks and allocations of CudaNnKernels (the
// thin wrappers in front of nn_raw), and CUDA's device math library (exp, log,
// sqrt, pow, cos, sin run as the host's libm here). Those need the GPU:
// test_cuda_parity runs the same assertions on CudaBackend.
//
// Outputs start as NaN, as stale pool memory could: an entry a kernel forgets
// to write shows up as NaN in the comparison.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include <loranull/backend/cuda/nn_kernels.hpp>

#include "gpu_nn_ops.hpp"
#include "gpu_ops.hpp"

namespace gpu {

// The emulated executable has no gpu_ops.cu: it reports one "device" so that
// the requires_gpu() cases run.
int device_count() { return 1; }
std::string device_description() { return "none: NN kernels emulated on the host (nn_host_emulation.cu)"; }

}  // namespace gpu

namespace gpu::nn {

namespace {

namespace raw = loranull::cuda_nn::nn_raw;
using loranull::cuda_nn::AttentionDims;

/// Runs f(k) for k = 0 .. count - 1: each "launch" complete before the next.
struct HostLaunch {
    template <class F>
    void operator()(Index count, const F& f) const {
        for (Index k = 0; k < count; ++k) f(k);
    }
};

template <class T>
HostMatrix<T> unwritten(Index rows, Index cols) {
    return HostMatrix<T>(rows, cols, std::numeric_limits<T>::quiet_NaN());
}

AttentionDims dims_of(const AttentionShape& a, Index tokens) {
    return {a.heads, a.kv_heads, a.head_dim, a.seq_len, tokens / a.seq_len};
}

}  // namespace

template <class T>
HostMatrix<T> embedding_forward(const HostMatrix<T>& table, const Tokens& tokens) {
    auto out = unwritten<T>(table.rows(), static_cast<Index>(tokens.size()));
    raw::embedding_forward(HostLaunch{}, out.data(), table.data(), tokens.data(), table.rows(), out.cols());
    return out;
}

template <class T>
HostMatrix<T> embedding_backward(const HostMatrix<T>& d_table, const HostMatrix<T>& dx, const Tokens& tokens) {
    HostMatrix<T> d = d_table;
    Index distinct = 0;
    const auto grouped = loranull::cuda_nn::group_positions_by_id(tokens, d_table.cols(), distinct);
    raw::embedding_backward(HostLaunch{}, d.data(), dx.data(), grouped.data(), distinct, dx.rows());
    return d;
}

template <class T>
Rmsnorm<T> rmsnorm_forward(const HostMatrix<T>& x, const HostMatrix<T>& gain, T eps) {
    Rmsnorm<T> r{unwritten<T>(x.rows(), x.cols()), unwritten<T>(1, x.cols())};
    raw::rmsnorm_forward(HostLaunch{}, r.y.data(), r.rstd.data(), x.data(), gain.data(), eps, x.rows(), x.cols());
    return r;
}

template <class T>
RmsnormGrad<T> rmsnorm_backward(const HostMatrix<T>& dy, const HostMatrix<T>& x, const HostMatrix<T>& gain,
                                const HostMatrix<T>& rstd, const HostMatrix<T>& d_gain) {
    RmsnormGrad<T> g{unwritten<T>(x.rows(), x.cols()), d_gain};
    auto scratch = unwritten<T>(1, x.cols());
    raw::rmsnorm_backward(HostLaunch{}, g.dx.data(), g.d_gain.data(), scratch.data(), dy.data(), x.data(), gain.data(),
                          rstd.data(), x.rows(), x.cols());
    return g;
}

template <class T>
HostMatrix<T> rope(const HostMatrix<T>& x, Index heads, Index head_dim, Index seq_len, double theta, int direction) {
    HostMatrix<T> y = x;
    raw::rope(HostLaunch{}, y.data(), heads, head_dim, seq_len, x.cols(), theta, direction);
    return y;
}

template <class T>
Attention<T> attention_forward(const HostMatrix<T>& q, const HostMatrix<T>& k, const HostMatrix<T>& v,
                               const AttentionShape& shape) {
    const AttentionDims a = dims_of(shape, q.cols());
    Attention<T> r{unwritten<T>(q.rows(), q.cols()), unwritten<T>(a.seq, a.prob_columns())};
    raw::attention_forward(HostLaunch{}, r.out.data(), r.probs.data(), q.data(), k.data(), v.data(), a);
    return r;
}

template <class T>
AttentionGrad<T> attention_backward(const HostMatrix<T>& d_out, const HostMatrix<T>& q, const HostMatrix<T>& k,
                                    const HostMatrix<T>& v, const HostMatrix<T>& probs, const AttentionShape& shape) {
    const AttentionDims a = dims_of(shape, q.cols());
    AttentionGrad<T> g{unwritten<T>(q.rows(), q.cols()), unwritten<T>(k.rows(), k.cols()),
                       unwritten<T>(v.rows(), v.cols())};
    auto ds = unwritten<T>(probs.rows(), probs.cols());
    raw::attention_backward(HostLaunch{}, g.dq.data(), g.dk.data(), g.dv.data(), ds.data(), d_out.data(), q.data(),
                            k.data(), v.data(), probs.data(), a);
    return g;
}

template <class T>
HostMatrix<T> swiglu_forward(const HostMatrix<T>& gate, const HostMatrix<T>& up) {
    auto h = unwritten<T>(gate.rows(), gate.cols());
    raw::swiglu_forward(HostLaunch{}, h.data(), gate.data(), up.data(), h.size());
    return h;
}

template <class T>
SwigluGrad<T> swiglu_backward(const HostMatrix<T>& dh, const HostMatrix<T>& gate, const HostMatrix<T>& up) {
    SwigluGrad<T> g{unwritten<T>(gate.rows(), gate.cols()), unwritten<T>(gate.rows(), gate.cols())};
    raw::swiglu_backward(HostLaunch{}, g.d_gate.data(), g.d_up.data(), dh.data(), gate.data(), up.data(), gate.size());
    return g;
}

/// The number of targets that are not ignore_target (what the backend counts).
inline Index scored(const Tokens& targets) {
    return static_cast<Index>(std::count_if(targets.begin(), targets.end(),
                                            [](std::int32_t y) { return y != loranull::ignore_target; }));
}

template <class T>
CrossEntropy<T> cross_entropy_forward(const HostMatrix<T>& logits, const Tokens& targets) {
    CrossEntropy<T> r{0.0, unwritten<T>(logits.rows(), logits.cols())};
    std::vector<double> losses(targets.size(), std::numeric_limits<double>::quiet_NaN());
    raw::cross_entropy_forward(HostLaunch{}, r.probs.data(), losses.data(), logits.data(), targets.data(),
                               logits.rows(), logits.cols());
    for (double l : losses) r.loss += l;  // as CudaNnKernels::cross_entropy_forward: in token order
    r.loss /= double(scored(targets));
    return r;
}

template <class T>
HostMatrix<T> cross_entropy_backward(const HostMatrix<T>& probs, const Tokens& targets) {
    auto d = unwritten<T>(probs.rows(), probs.cols());
    raw::cross_entropy_backward(HostLaunch{}, d.data(), probs.data(), targets.data(), probs.rows(), probs.cols(),
                                scored(targets));
    return d;
}

template <class T>
AdamWState<T> adamw_update(const AdamWState<T>& state, const HostMatrix<T>& grad, double lr, double beta1,
                           double beta2, double eps, double weight_decay, long step) {
    AdamWState<T> s = state;
    raw::adamw_update(HostLaunch{}, s.param.data(), s.m.data(), s.v.data(), grad.data(),
                      loranull::cuda_nn::adamw_constants<T>(lr, beta1, beta2, eps, weight_decay, step), s.param.size());
    return s;
}

#define LORANULL_NN_EMULATION_INSTANTIATE(T)                                                                    \
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
                                           double, double, long);

LORANULL_NN_EMULATION_INSTANTIATE(float)
LORANULL_NN_EMULATION_INSTANTIATE(double)

}  // namespace gpu::nn
