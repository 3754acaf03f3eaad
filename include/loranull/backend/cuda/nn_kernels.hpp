#pragma once
// The CUDA backend's NN kernels, layer 3 of 3: CudaNnKernels, the NnBackend
// members of CudaBackend (backend/nn.hpp), the device twins of
// backend/cpu/nn_kernels.hpp (same equations, shapes and cache layouts). Each
// member checks its arguments on the host (the checks of nn.hpp, shared with
// the CPU, plus the GPU's own), allocates outputs and scratch, uploads token
// ids, then runs the op's launch sequence (nn_launches.hpp).
//
// A CRTP base. What it asks of Bk (CudaBackend, through cuda_detail::
// CudaContext; tests/cuda's host emulation provides the same on host memory,
// which is how the emulation runs these very members without a GPU). MatrixOf
// is Bk's matrix template (DeviceMatrix), a parameter because Bk is still
// incomplete where its bases are instantiated:
//   allocate<T>(rows, cols)              a MatrixOf<T>; contents undefined
//   download(Matrix<double>)             -> HostMatrix<double>, waits
//   make_current(where)                  a guard making the backend's device current
//   owns(m)                              m lives where the backend allocates (its stream)
//   to_device(std::vector<I>, where)     a buffer with data(), copied, source reusable at once
//   self().launcher(where)                      launch(count, functor), in order
//
// Token ids: std::vector<std::int32_t> on the host, uploaded per call.
// Included only from .cu translation units (through cuda_backend.hpp).

#include <cstdint>
#include <vector>

#include "loranull/backend/cuda/nn_launches.hpp"
#include "loranull/backend/nn.hpp"
#include "loranull/core/error.hpp"
#include "loranull/core/host_matrix.hpp"
#include "loranull/core/types.hpp"

namespace loranull {

/// Every member makes the backend's device current, checks, allocates on the
/// backend's stream and enqueues; only cross_entropy_forward (the loss reaches
/// the host) and the token uploads wait for the stream.
template <class Bk, template <class> class MatrixOf>
class CudaNnKernels {
public:
    template <class T>
    using DMatrix = MatrixOf<T>;

    // --- embedding -------------------------------------------------------------

    /// X(:, t) = table(:, tokens[t]); table is d x vocab.
    template <Real T>
    DMatrix<T> embedding_forward(const DMatrix<T>& table, const std::vector<std::int32_t>& tokens) const {
        const char* where = "CudaBackend::embedding_forward";
        check_token_ids(tokens, table.cols(), where);
        const auto guard = self().make_current(where);
        DMatrix<T> x = self().template allocate<T>(table.rows(), static_cast<Index>(tokens.size()));
        if (x.size() == 0) return x;
        const auto ids = self().to_device(tokens, where);
        cuda_nn::nn_raw::embedding_forward(self().launcher(where), x.data(), table.data(),
                                           static_cast<const std::int32_t*>(ids.data()), table.rows(), x.cols());
        return x;
    }

    /// d_table(:, tokens[t]) += dX(:, t), deterministic (positions grouped by id
    /// on the host, added in order).
    template <Real T>
    void embedding_backward(DMatrix<T>& d_table, const DMatrix<T>& dx, const std::vector<std::int32_t>& tokens) const {
        const char* where = "CudaBackend::embedding_backward";
        check_embedding_backward(d_table, dx, tokens, where);
        check_token_ids(tokens, d_table.cols(), where);
        if (dx.size() == 0) return;
        const auto guard = self().make_current(where);
        Index distinct = 0;
        const auto grouped = self().to_device(cuda_nn::group_positions_by_id(tokens, d_table.cols(), distinct), where);
        cuda_nn::nn_raw::embedding_backward(self().launcher(where), d_table.data(), dx.data(),
                                            static_cast<const std::int64_t*>(grouped.data()), distinct, dx.rows());
    }

    // --- RMSNorm ---------------------------------------------------------------

    /// y = x * rstd * g per column, rstd = 1 / sqrt(mean(x^2) + eps); rstd (1 x T) saved.
    template <Real T>
    DMatrix<T> rmsnorm_forward(const DMatrix<T>& x, const DMatrix<T>& gain, T eps, DMatrix<T>& rstd) const {
        const char* where = "CudaBackend::rmsnorm_forward";
        check_rmsnorm_gain(x, gain, where);
        const auto guard = self().make_current(where);
        reshape(rstd, 1, x.cols());
        DMatrix<T> y = self().template allocate<T>(x.rows(), x.cols());
        if (x.size() == 0) return y;
        cuda_nn::nn_raw::rmsnorm_forward(self().launcher(where), y.data(), rstd.data(), x.data(), gain.data(), eps, x.rows(),
                                         x.cols());
        return y;
    }

    /// With u = g * dy:  dx = rstd u - x rstd^3 (x . u) / d,   dg += sum_t dy * x * rstd.
    template <Real T>
    DMatrix<T> rmsnorm_backward(const DMatrix<T>& dy, const DMatrix<T>& x, const DMatrix<T>& gain,
                                const DMatrix<T>& rstd, DMatrix<T>& d_gain) const {
        const char* where = "CudaBackend::rmsnorm_backward";
        require(dy.rows() == x.rows() && dy.cols() == x.cols() && gain.rows() == x.rows() && gain.cols() == 1 &&
                    rstd.rows() == 1 && rstd.cols() == x.cols() && d_gain.rows() == x.rows() && d_gain.cols() == 1,
                where, "dy is ", shape_string(dy.rows(), dy.cols()), ", x ", shape_string(x.rows(), x.cols()),
                ", gain ", shape_string(gain.rows(), gain.cols()), ", rstd ", shape_string(rstd.rows(), rstd.cols()),
                ", d_gain ", shape_string(d_gain.rows(), d_gain.cols()));
        const auto guard = self().make_current(where);
        DMatrix<T> dx = self().template allocate<T>(x.rows(), x.cols());
        if (x.size() == 0) return dx;
        DMatrix<T> dots = self().template allocate<T>(1, x.cols());
        cuda_nn::nn_raw::rmsnorm_backward(self().launcher(where), dx.data(), d_gain.data(), dots.data(), dy.data(), x.data(),
                                          gain.data(), rstd.data(), x.rows(), x.cols());
        return dx;
    }

    // --- rotary position embedding (Hugging Face "rotate half" layout) ---------

    /// In place; direction = -1 applies the inverse rotation (the backward).
    template <Real T>
    void rope(DMatrix<T>& x, Index heads, Index head_dim, Index seq_len, const std::vector<double>& frequencies,
              int direction = 1) const {
        const char* where = "CudaBackend::rope";
        check_rope(x, heads, head_dim, seq_len, frequencies, where, /*nonempty_heads=*/true);  // Rope indexes by hd / 2
        if (x.size() == 0) return;
        const auto guard = self().make_current(where);
        const auto device_frequencies = self().to_device(frequencies, where);  // head_dim / 2, in double
        cuda_nn::nn_raw::rope(self().launcher(where), x.data(), heads, head_dim, seq_len, x.cols(),
                              static_cast<const double*>(device_frequencies.data()), direction);
    }

    // --- causal grouped-query attention ----------------------------------------

    /// O = V softmax_causal(K^T Q / sqrt(hd)) per sequence and head; probs saved
    /// (seq x (seq * heads * batch), the CPU's layout).
    template <Real T>
    DMatrix<T> attention_forward(const DMatrix<T>& q, const DMatrix<T>& k, const DMatrix<T>& v, const AttentionShape& a,
                                 DMatrix<T>& probs) const {
        const char* where = "CudaBackend::attention_forward";
        const cuda_nn::AttentionDims dims = attention_dims(q, k, v, a, where);
        const auto guard = self().make_current(where);
        reshape(probs, dims.seq, dims.prob_columns());
        DMatrix<T> out = self().template allocate<T>(q.rows(), q.cols());
        if (out.size() == 0) return out;
        cuda_nn::nn_raw::attention_forward(self().launcher(where), out.data(), probs.data(), q.data(), k.data(), v.data(), dims);
        return out;
    }

    /// dq, dk, dv are (re)allocated and overwritten (not accumulated), as on the CPU.
    template <Real T>
    void attention_backward(const DMatrix<T>& d_out, const DMatrix<T>& q, const DMatrix<T>& k, const DMatrix<T>& v,
                            const DMatrix<T>& probs, const AttentionShape& a, DMatrix<T>& dq, DMatrix<T>& dk,
                            DMatrix<T>& dv) const {
        const char* where = "CudaBackend::attention_backward";
        const cuda_nn::AttentionDims dims = attention_dims(q, k, v, a, where);
        require(d_out.rows() == q.rows() && d_out.cols() == q.cols() && probs.rows() == dims.seq &&
                    probs.cols() == dims.prob_columns(),
                where, "dO is ", shape_string(d_out.rows(), d_out.cols()), ", probs ",
                shape_string(probs.rows(), probs.cols()), " for q ", shape_string(q.rows(), q.cols()));
        const auto guard = self().make_current(where);
        reshape(dq, q.rows(), q.cols());
        reshape(dk, k.rows(), k.cols());
        reshape(dv, v.rows(), v.cols());
        if (q.size() == 0) return;
        DMatrix<T> ds = self().template allocate<T>(probs.rows(), probs.cols());
        cuda_nn::nn_raw::attention_backward(self().launcher(where), dq.data(), dk.data(), dv.data(), ds.data(), d_out.data(),
                                            q.data(), k.data(), v.data(), probs.data(), dims);
    }

    // --- SwiGLU ------------------------------------------------------------------

    /// h = silu(g) * u, silu(g) = g / (1 + exp(-g)).
    template <Real T>
    DMatrix<T> swiglu_forward(const DMatrix<T>& gate, const DMatrix<T>& up) const {
        const char* where = "CudaBackend::swiglu_forward";
        check_swiglu(gate, up, where);
        const auto guard = self().make_current(where);
        DMatrix<T> h = self().template allocate<T>(gate.rows(), gate.cols());
        cuda_nn::nn_raw::swiglu_forward(self().launcher(where), h.data(), gate.data(), up.data(), h.size());
        return h;
    }

    /// dgate = dh * u * sigma(g) (1 + g (1 - sigma(g))),  dup = dh * silu(g).
    template <Real T>
    void swiglu_backward(const DMatrix<T>& dh, const DMatrix<T>& gate, const DMatrix<T>& up, DMatrix<T>& d_gate,
                         DMatrix<T>& d_up) const {
        const char* where = "CudaBackend::swiglu_backward";
        require(gate.rows() == up.rows() && gate.cols() == up.cols() && dh.rows() == gate.rows() &&
                    dh.cols() == gate.cols(),
                where, "dh is ", shape_string(dh.rows(), dh.cols()), ", gate ", shape_string(gate.rows(), gate.cols()),
                ", up ", shape_string(up.rows(), up.cols()));
        const auto guard = self().make_current(where);
        reshape(d_gate, gate.rows(), gate.cols());
        reshape(d_up, gate.rows(), gate.cols());
        cuda_nn::nn_raw::swiglu_backward(self().launcher(where), d_gate.data(), d_up.data(), dh.data(), gate.data(), up.data(),
                                         gate.size());
    }

    // --- softmax cross-entropy -------------------------------------------------

    /// Mean over the scored tokens of -log softmax(logits(:, t))[targets[t]]
    /// (ignore_target scores nothing); probs (V x T) saved. The per-token losses
    /// (double) come back to the host and are summed there in token order, as
    /// the CPU sums them.
    template <Real T>
    double cross_entropy_forward(const DMatrix<T>& logits, const std::vector<std::int32_t>& targets,
                                 DMatrix<T>& probs) const {
        const char* where = "CudaBackend::cross_entropy_forward";
        check_cross_entropy(logits, targets, "logits", where, /*nonempty_vocab=*/true);  // a max over V entries
        const Index scored = scored_targets(targets, logits.rows(), where);
        const auto guard = self().make_current(where);
        reshape(probs, logits.rows(), logits.cols());
        const auto device_targets = self().to_device(targets, where);
        auto losses = self().template allocate<double>(logits.cols(), 1);  // T x 1, one per token
        cuda_nn::nn_raw::cross_entropy_forward(self().launcher(where), probs.data(), losses.data(), logits.data(),
                                               static_cast<const std::int32_t*>(device_targets.data()), logits.rows(),
                                               logits.cols());
        const HostMatrix<double> host = self().download(losses);
        double loss = 0;
        for (Index t = 0; t < host.size(); ++t) loss += host.data()[t];
        return loss / double(scored);
    }

    /// dlogits = (probs - onehot(targets)) / S over the S scored tokens, 0 in
    /// ignored columns.
    template <Real T>
    DMatrix<T> cross_entropy_backward(const DMatrix<T>& probs, const std::vector<std::int32_t>& targets) const {
        const char* where = "CudaBackend::cross_entropy_backward";
        check_cross_entropy(probs, targets, "probs", where);
        const Index scored = scored_targets(targets, probs.rows(), where);
        const auto guard = self().make_current(where);
        DMatrix<T> d = self().template allocate<T>(probs.rows(), probs.cols());
        const auto device_targets = self().to_device(targets, where);
        cuda_nn::nn_raw::cross_entropy_backward(self().launcher(where), d.data(), probs.data(),
                                                static_cast<const std::int32_t*>(device_targets.data()), probs.rows(),
                                                probs.cols(), scored);
        return d;
    }

    // --- AdamW (decoupled weight decay) ------------------------------------------

    /// m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    /// p -= lr (m / (1 - b1^step) / (sqrt(v / (1 - b2^step)) + eps) + wd p).
    template <Real T>
    void adamw_update(DMatrix<T>& param, const DMatrix<T>& grad, DMatrix<T>& m, DMatrix<T>& v, double lr, double beta1,
                      double beta2, double eps, double weight_decay, long step) const {
        const char* where = "CudaBackend::adamw_update";
        check_adamw(param, grad, m, v, where);
        if (param.size() == 0) return;
        const auto guard = self().make_current(where);
        cuda_nn::nn_raw::adamw_update(self().launcher(where), param.data(), m.data(), v.data(), grad.data(),
                                      cuda_nn::adamw_constants<T>(lr, beta1, beta2, eps, weight_decay, step),
                                      param.size());
    }

private:
    const Bk& self() const { return static_cast<const Bk&>(*this); }

    /// Makes `m` rows x cols (reallocating only when the shape differs or m
    /// lives elsewhere); contents undefined.
    template <class T>
    void reshape(DMatrix<T>& m, Index rows, Index cols) const {
        if (m.rows() != rows || m.cols() != cols || !self().owns(m)) m = self().template allocate<T>(rows, cols);
    }

    /// nn.hpp's attention check, then the geometry the launches take.
    template <class M>
    static cuda_nn::AttentionDims attention_dims(const M& q, const M& k, const M& v, const AttentionShape& a,
                                                 const char* where) {
        check_attention(q, k, v, a, where);
        return {a.heads, a.kv_heads, a.head_dim, a.seq_len, q.cols() / a.seq_len};
    }
};

}  // namespace loranull
