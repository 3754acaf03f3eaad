// layer_finetune_demo: the LoRA-Null experiment on one linear layer.
//
// A layer W (m x n) has seen "knowledge" inputs that use some directions of the
// input space much more than others. We fine-tune it on a task whose inputs
// reach every direction, with every initialisation of the paper (same rank,
// steps, optimiser and seed), and measure
//   knowledge kept:  the relative change of the layer's outputs on held-out
//                    knowledge inputs (0 = nothing forgotten);
//   task learned:    the relative error on held-out task inputs.
// LoRA-Null's A0 reads only directions the knowledge inputs barely use, so its
// outputs on them barely move; v2 (A frozen) carries SPEC.md's guarantee.
//
// usage: layer_finetune_demo [--dim N] [--rank R] [--steps S] [--lr LR] [--seed S]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <loranull/loranull.hpp>

using namespace loranull;
using Mat = CpuBackend::Matrix<double>;

namespace {

double arg(int argc, char** argv, const std::string& name, double fallback) {
    for (int i = 1; i + 1 < argc; ++i)
        if (argv[i] == name) return std::stod(argv[i + 1]);
    return fallback;
}

/// Adam with decoupled weight decay 0 on one matrix (llm.c's update, one loop).
struct Adam {
    Mat m, v;
    double lr, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    int t = 0;
    Adam(const Mat& like, double learning_rate) : m(Mat::Zero(like.rows(), like.cols())), v(m), lr(learning_rate) {}
    void step(Mat& param, const Mat& grad) {
        ++t;
        m = beta1 * m + (1 - beta1) * grad;
        v = beta2 * v + (1 - beta2) * grad.cwiseProduct(grad);
        const double c1 = 1 - std::pow(beta1, t), c2 = 1 - std::pow(beta2, t);
        param.array() -= lr * (m.array() / c1) / ((v.array() / c2).sqrt() + eps);
    }
};

struct Data {
    Mat knowledge_calibration, knowledge_held_out, task_train, task_held_out, task_target_train, task_target_held_out;
};

/// Inputs x = Q D g: Q a fixed rotation, D = diag(decay^i). Knowledge inputs
/// decay over 4 decades (anisotropic, like hidden states); task inputs are
/// isotropic, so they reach the directions knowledge never uses. The task's
/// target map is W + Delta with Delta of rank r / 2 reading only directions in
/// the least-used half of the knowledge inputs' space: a solution that keeps
/// the knowledge exists, and the question is which method finds it.
Data make_data(CpuBackend& cpu, const Mat& w, Index r, std::uint64_t seed) {
    const Index n = w.cols(), m = w.rows();
    Rng rng(seed);
    const Mat q = cpu.thin_q(cpu.upload(random_normal<double>(n, n, rng)));
    Eigen::VectorXd knowledge_scale(n);
    for (Index i = 0; i < n; ++i) knowledge_scale(i) = std::pow(1e-4, double(i) / double(n - 1));
    auto knowledge = [&](Index tokens) {
        Mat g = cpu.upload(random_normal<double>(n, tokens, rng));
        return Mat(q * knowledge_scale.asDiagonal() * g);
    };
    auto task = [&](Index tokens) { return cpu.upload(random_normal<double>(n, tokens, rng, 0.5)); };
    // The new skill reads directions the knowledge inputs use little: Delta's
    // rows lie in a random (r/2)-dimensional subspace of the least-used half.
    const Mat least_used_half = q.rightCols(n / 2);                               // n x n/2
    const Mat skill_rows = cpu.thin_q(Mat(least_used_half * cpu.upload(random_normal<double>(n / 2, r / 2, rng))));
    const Mat delta = cpu.upload(random_normal<double>(m, r / 2, rng, 2.0 / std::sqrt(double(r)))) *
                      skill_rows.transpose();
    Data d{knowledge(8 * n), knowledge(2 * n), task(4 * n), task(2 * n), {}, {}};
    d.task_target_train = (w + delta) * d.task_train;
    d.task_target_held_out = (w + delta) * d.task_held_out;
    return d;
}

struct Result {
    std::string method;
    Index trainable = 0;
    double knowledge_change = 0, task_error = 0, task_error_before = 0, bound = -1, seconds = 0;
};

double relative(const Mat& a, const Mat& b) { return (a - b).norm() / b.norm(); }

Result finetune(CpuBackend& cpu, const std::string& name, LoraFactors<CpuBackend, double> factors, Trainable trainable,
                const Mat& w, const Data& d, int steps, double lr) {
    const auto start = std::chrono::steady_clock::now();
    LoraLinear<CpuBackend, double> layer(cpu, std::move(factors), trainable);
    Result result{name};
    result.trainable = (layer.trains_A() ? layer.A.size() : 0) + (layer.trains_B() ? layer.B.size() : 0);
    result.task_error_before = relative(layer.forward(d.task_held_out), d.task_target_held_out);
    Adam adam_a(layer.A, lr), adam_b(layer.B, lr);
    const Index batch = 64, tokens = d.task_train.cols();
    for (int step = 0; step < steps; ++step) {
        const Index start_column = (step * batch) % (tokens - batch);
        const Mat x = d.task_train.middleCols(start_column, batch);
        const Mat dy = (layer.forward(x) - d.task_target_train.middleCols(start_column, batch)) / double(batch);
        const auto g = layer.backward(x, dy);  // loss = 0.5 ||y - y*||^2 / batch
        if (layer.trains_A()) adam_a.step(layer.A, g.dA);
        if (layer.trains_B()) adam_b.step(layer.B, g.dB);
    }
    result.task_error = relative(layer.forward(d.task_held_out), d.task_target_held_out);
    result.knowledge_change = relative(layer.forward(d.knowledge_held_out), Mat(w * d.knowledge_held_out));
    const auto report = knowledge_report(cpu, layer, d.knowledge_held_out);
    if (report.bound_applies) result.bound = report.bound / report.base_output;
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return result;
}

/// Full fine-tuning of W itself, same optimiser: the reference for learning.
Result full_finetune(const Mat& w, const Data& d, int steps, double lr) {
    const auto start = std::chrono::steady_clock::now();
    Mat trained = w;
    Adam adam(trained, lr);
    const Index batch = 64, tokens = d.task_train.cols();
    for (int step = 0; step < steps; ++step) {
        const Index start_column = (step * batch) % (tokens - batch);
        const Mat x = d.task_train.middleCols(start_column, batch);
        const Mat dy = (trained * x - d.task_target_train.middleCols(start_column, batch)) / double(batch);
        adam.step(trained, Mat(dy * x.transpose()));
    }
    Result result{"full fine-tuning"};
    result.trainable = w.size();
    result.task_error_before = relative(Mat(w * d.task_held_out), d.task_target_held_out);
    result.task_error = relative(Mat(trained * d.task_held_out), d.task_target_held_out);
    result.knowledge_change = relative(Mat(trained * d.knowledge_held_out), Mat(w * d.knowledge_held_out));
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return result;
}

}  // namespace

int main(int argc, char** argv) try {
    for (int i = 1; i < argc; ++i)
        if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
            std::puts("usage: layer_finetune_demo [--dim N] [--rank R] [--steps S] [--lr LR] [--seed S]");
            return 0;
        }
    const Index n = static_cast<Index>(arg(argc, argv, "--dim", 256));
    const Index r = static_cast<Index>(arg(argc, argv, "--rank", 16));
    const int steps = static_cast<int>(arg(argc, argv, "--steps", 600));
    const double lr = arg(argc, argv, "--lr", 2e-3);
    const auto seed = static_cast<std::uint64_t>(arg(argc, argv, "--seed", 233));
    require(n >= 8 && r >= 2 && r <= n && steps >= 1 && lr > 0, "layer_finetune_demo", "bad options");

    CpuBackend cpu;
    Rng rng(seed);
    const Mat w = cpu.upload(random_normal<double>(n, n, rng, 1.0 / std::sqrt(double(n))));
    const Data d = make_data(cpu, w, r, seed + 1);

    // One calibration pass serves every data-driven method.
    Covariance<CpuBackend> knowledge(cpu, n, Normalisation::plain, "synthetic-knowledge");
    knowledge.add_samples(d.knowledge_calibration, n);
    const auto ns = null_space(knowledge, r);
    std::printf("layer %td x %td, rank %td, %d Adam steps at lr %.g, seed %llu\n", n, n, r, steps, lr,
                static_cast<unsigned long long>(seed));
    std::printf("knowledge calibration: %lld tokens; null-space energy fraction %.2e%s\n\n",
                static_cast<long long>(knowledge.tokens()), ns.energy_fraction(),
                ns.rank_report.deficient ? " (rank-deficient!)" : "");

    const LoraConfig config{r, {}, seed};
    std::vector<Result> results;
    results.push_back(full_finetune(w, d, steps, lr));
    results.push_back(finetune(cpu, "LoRA", lora(cpu, w, config), Trainable::both, w, d, steps, lr));
    results.push_back(finetune(cpu, "PiSSA", pissa(cpu, w, config), Trainable::both, w, d, steps, lr));
    results.push_back(finetune(cpu, "MiLoRA", milora(cpu, w, config), Trainable::both, w, d, steps, lr));
    results.push_back(finetune(cpu, "CorDA (KPM)", corda_kpm(cpu, w, knowledge, config), Trainable::both, w, d, steps, lr));
    results.push_back(finetune(cpu, "LoRA-Null v1", lora_null(cpu, w, ns, config), Trainable::both, w, d, steps, lr));
    results.push_back(finetune(cpu, "LoRA-Null v2", lora_null(cpu, w, ns, config), Trainable::B_only, w, d, steps, lr));

    std::printf("%-18s %10s %16s %14s %14s %8s\n", "method", "trainable", "knowledge change", "task error", "bound (v2)",
                "time s");
    for (const auto& x : results) {
        char bound[32] = "-";
        if (x.bound >= 0) std::snprintf(bound, sizeof bound, "%.2e", x.bound);
        std::printf("%-18s %10td %16.2e %6.3f->%6.3f %14s %8.2f\n", x.method.c_str(), x.trainable, x.knowledge_change,
                    x.task_error_before, x.task_error, bound, x.seconds);
    }
    std::puts("\nknowledge change = ||W' X_k - W X_k|| / ||W X_k|| on held-out knowledge inputs (lower keeps more);");
    std::puts("task error = ||W' X_t - Y_t|| / ||Y_t|| on held-out task inputs, before -> after (lower learned more);");
    std::puts("bound = SPEC.md section 4's s ||B' - B0||_2 ||A0 X_k|| / ||W X_k||, which the knowledge change never exceeds.");
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "layer_finetune_demo: %s\n", e.what());
    return 1;
}
