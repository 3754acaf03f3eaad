// The whole LLaMA model on the GPU against the CPU: the same weights (every
// parameter by its Hugging Face name, LoRA factors given explicitly), the same
// tokens, the same calls (model_run.hpp, one generic function run on both
// backends): logits, loss, every parameter's gradient, then three AdamW steps
// (losses, gradient norms before clipping, every parameter after).
//
// Model: 2 blocks, dim 16, 4 query heads on 2 kv heads (GQA), hidden 24,
// vocab 37, batch 2 of 13 tokens; tied and untied embeddings; LoRA adapters
// (rank 3, scale 2, B != 0 so every factor matters) on q of block 0 (A and B
// train), v of block 1 (A only) and down of block 1 (B only, LoRA-Null v2's
// regime), with full fine-tuning of everything else, or LoRA-only training.
//
// Tolerances, relative (Frobenius for matrices): 1e-4 in float, 1e-10 in
// double. Each kernel agrees to a few hundred eps (test_cuda_nn_parity.cpp);
// a forward and backward pass chains about 20 of them through two blocks of
// well-conditioned random weights (scores and logits of order 0.1, no
// saturated softmax), so the errors add to some 1e3 eps in the worst case:
// 1e-4 is ~800 eps(float). In double the same reasoning gives ~1e-13; 1e-10
// leaves room and still sits three orders below float's eps, so a float
// rounding anywhere in a double path (a float constant, expf on a double)
// fails the test. Three AdamW steps with lr 1e-3 move the parameters by
// ~lr, much less than their size, and the update m / (sqrt(v) + eps) is a
// smooth function of well-separated-from-zero gradients here.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "../test_util.hpp"
#include "gpu_nn_ops.hpp"
#include "gpu_test.hpp"

using namespace loranull;
using gpu_test::requires_gpu;
using test::Mat;

namespace {

CpuBackend cpu;

template <class T>
double model_tol() {
    return std::is_same_v<T, float> ? 1e-4 : 1e-10;
}

template <class T>
HostMatrix<T> gaussian(Index rows, Index cols, std::uint64_t seed, double stddev = 1.0) {
    Rng rng(seed);
    return random_normal<T>(rows, cols, rng, stddev);
}

std::vector<std::int32_t> random_tokens(Index count, Index vocab, std::uint64_t seed) {
    Rng rng(seed);
    std::vector<std::int32_t> t(static_cast<std::size_t>(count));
    for (auto& x : t) x = static_cast<std::int32_t>(rng.next_u64() % static_cast<std::uint64_t>(vocab));
    return t;
}

LlamaConfig parity_config(bool tied) {
    LlamaConfig c;
    c.dim = 16;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.hidden_dim = 24;
    c.vocab_size = 37;
    c.max_seq_len = 16;
    c.tied_embeddings = tied;
    return c;
}

/// Weights from init_random on the CPU, norm gains moved off 1, and (when
/// `adapters`) three LoRA adapters with W_res = W - s B A.
template <class T>
gpu::nn::ModelSpec<T> make_spec(bool tied, bool full_finetune, bool adapters) {
    gpu::nn::ModelSpec<T> spec;
    spec.config = parity_config(tied);
    spec.full_finetune = full_finetune;
    LlamaModel<CpuBackend, T> reference(cpu, spec.config);
    reference.init_random(tied ? 21 : 22);
    std::uint64_t seed = 100;
    for (auto& p : reference.parameters()) {
        HostMatrix<T> value = cpu.download(*p.value);
        if (p.name.find("norm.weight") != std::string::npos) {
            const HostMatrix<T> noise = gaussian<T>(value.rows(), value.cols(), ++seed, 0.3);
            for (Index i = 0; i < value.size(); ++i) value.data()[i] += noise.data()[i];
        }
        spec.values[p.name] = value;
    }
    if (!adapters) return spec;
    struct Where {
        Index layer;
        ProjectionKind kind;
        Trainable trainable;
    };
    for (Where w : {Where{0, ProjectionKind::q, Trainable::both}, Where{1, ProjectionKind::v, Trainable::A_only},
                    Where{1, ProjectionKind::down, Trainable::B_only}}) {
        const std::string name = "model.layers." + std::to_string(w.layer) + "." + projection_path(w.kind) + ".weight";
        const Mat<T> weight = cpu.upload(spec.values.at(name));
        spec.values.erase(name);
        const Index r = 3;
        gpu::nn::AdapterSpec<T> a;
        a.layer = w.layer;
        a.projection = w.kind;
        a.trainable = w.trainable;
        a.scale = T(2);
        a.A = gaussian<T>(r, weight.cols(), ++seed, 0.3);
        a.B = gaussian<T>(weight.rows(), r, ++seed, 0.3);
        const Mat<T> w_res = weight - a.scale * cpu.upload(a.B) * cpu.upload(a.A);
        a.W_res = cpu.download(w_res);
        spec.adapters.push_back(a);
    }
    return spec;
}

template <class T>
double matrix_error(const HostMatrix<T>& got, const HostMatrix<T>& expected) {
    REQUIRE(got.rows() == expected.rows());
    REQUIRE(got.cols() == expected.cols());
    if (expected.size() == 0) return 0;
    return test::relative_error(cpu.upload(got), cpu.upload(expected));
}

double scalar_error(double got, double expected) { return std::abs(got - expected) / std::max(std::abs(expected), 1e-300); }

}  // namespace

TEST_CASE_TEMPLATE("LlamaModel on the GPU matches the CPU: logits, loss, every gradient, three AdamW steps" *
                       requires_gpu(),
                   T, float, double) {
    struct Variant {
        bool tied, full_finetune, adapters;
    };
    for (Variant variant : {Variant{false, true, true}, Variant{true, true, true}, Variant{false, false, true},
                            Variant{true, true, false}}) {
        CAPTURE(variant.tied);
        CAPTURE(variant.full_finetune);
        CAPTURE(variant.adapters);
        const auto spec = make_spec<T>(variant.tied, variant.full_finetune, variant.adapters);
        gpu::nn::TrainingSpec training;
        training.seq_len = 13;
        training.tokens = random_tokens(2 * training.seq_len, spec.config.vocab_size, 31);
        training.targets = random_tokens(2 * training.seq_len, spec.config.vocab_size, 32);
        training.steps = 3;
        training.lr = 1e-3;
        training.adamw.weight_decay = 0.1;
        const auto expected = gpu::nn::run_model(cpu, spec, training);
        const auto got = gpu::nn::run_model(spec, training);
        const double tol = model_tol<T>();
        CHECK(matrix_error(got.logits, expected.logits) < tol);
        CHECK(scalar_error(got.loss, expected.loss) < tol);
        REQUIRE(got.names == expected.names);
        Index trained = 0;
        for (std::size_t i = 0; i < got.names.size(); ++i) {
            CAPTURE(got.names[i]);
            CHECK(got.grads[i].size() == expected.grads[i].size());  // the same parameters train
            if (expected.grads[i].size() > 0) ++trained;
            CHECK(matrix_error(got.grads[i], expected.grads[i]) < tol);
            CHECK(matrix_error(got.values_after[i], expected.values_after[i]) < tol);
        }
        CHECK(trained > 0);
        REQUIRE(got.step_losses.size() == expected.step_losses.size());
        for (std::size_t s = 0; s < got.step_losses.size(); ++s) {
            CAPTURE(s);
            CHECK(scalar_error(got.step_losses[s], expected.step_losses[s]) < tol);
            CHECK(scalar_error(got.grad_norms[s], expected.grad_norms[s]) < tol);
        }
        CHECK(expected.step_losses.back() < expected.step_losses.front());  // the steps did train
    }
}

TEST_CASE("NN kernels on the GPU: bad arguments throw loranull::error naming the function and the values" *
          requires_gpu()) {
    using H = HostMatrix<double>;
    auto message = [](auto&& f) { return test::error_message(f); };
    struct Expect {
        std::string message;
        std::vector<std::string> parts;
    };
    const std::vector<Expect> cases{
        {message([] { gpu::nn::embedding_forward(H(3, 5), {0, 7}); }),
         {"loranull::CudaBackend::embedding_forward", "token id 7 at position 1", "vocabulary of 5"}},
        {message([] { gpu::nn::embedding_backward(H(3, 5), H(3, 1), {0, 1}); }),
         {"CudaBackend::embedding_backward", "dX is 3 x 1", "2 tokens"}},
        {message([] { gpu::nn::rmsnorm_forward(H(4, 2), H(3, 1), 1e-5); }),
         {"CudaBackend::rmsnorm_forward", "gain is 3 x 1", "expected 4 x 1"}},
        {message([] { gpu::nn::rope(H(12, 6), 2, 6, 4, 10000.0, 1); }),
         {"CudaBackend::rope", "12 x 6", "sequences of 4"}},
        {message([] { gpu::nn::attention_forward(H(12, 4), H(8, 4), H(8, 4), AttentionShape{3, 2, 4, 4}); }),
         {"CudaBackend::attention_forward", "heads 3 not a multiple of kv heads 2"}},
        {message([] { gpu::nn::swiglu_forward(H(3, 2), H(2, 3)); }),
         {"CudaBackend::swiglu_forward", "gate is 3 x 2", "up is 2 x 3"}},
        {message([] { gpu::nn::cross_entropy_forward(H(5, 2), {1}); }),
         {"CudaBackend::cross_entropy_forward", "logits are 5 x 2", "1 targets"}},
        {message([] { gpu::nn::cross_entropy_forward(H(5, 2), {1, 5}); }),
         {"CudaBackend::cross_entropy_forward", "target 5 at position 1"}},
        {message([] { gpu::nn::adamw_update(gpu::nn::AdamWState<double>{H(2, 2), H(2, 2), H(2, 2)}, H(2, 3), 1e-3,
                                            0.9, 0.999, 1e-8, 0.0, 1); }),
         {"CudaBackend::adamw_update", "grad is 2 x 3"}},
    };
    for (const auto& c : cases) {
        CAPTURE(c.message);
        CHECK_FALSE(c.message.empty());
        for (const auto& part : c.parts) CHECK(c.message.find(part) != std::string::npos);
    }
}
