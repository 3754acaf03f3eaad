// llama/: every NN kernel's backward against finite differences in double, the
// whole model's gradients (every parameter, LoRA factors included), the RoPE
// convention, logits unchanged when adapters replace projections at init,
// overfitting a batch, determinism, checkpoints, bad input.
#include <doctest/doctest.h>

#include <filesystem>
#include <functional>
#include <tuple>

#include <loranull/io/hf_checkpoint.hpp>
#include <loranull/llama/model.hpp>
#include <loranull/llama/train.hpp>

#include "test_util.hpp"

using namespace loranull;
using test::Mat;
using Tokens = std::vector<std::int32_t>;

namespace {
CpuBackend cpu;

/// Max over entries of |numeric - analytic| / max(1, |numeric|), central
/// differences with step h on `param`, `loss` re-evaluated each time.
double gradient_error(Mat<double>& param, const Mat<double>& analytic, const std::function<double()>& loss,
                      double h = 1e-5) {
    REQUIRE(analytic.rows() == param.rows());
    REQUIRE(analytic.cols() == param.cols());
    double worst = 0;
    for (Index k = 0; k < param.size(); ++k) {
        const double saved = param.data()[k];
        param.data()[k] = saved + h;
        const double plus = loss();
        param.data()[k] = saved - h;
        const double minus = loss();
        param.data()[k] = saved;
        const double numeric = (plus - minus) / (2 * h);
        worst = std::max(worst, std::abs(numeric - analytic.data()[k]) / std::max(1.0, std::abs(numeric)));
    }
    return worst;
}

/// <G, Y>: a linear read-out whose gradient with respect to Y is G.
double readout(const Mat<double>& g, const Mat<double>& y) { return (g.array() * y.array()).sum(); }

LlamaConfig tiny_config(bool tied = false) {
    LlamaConfig c;
    c.dim = 8;
    c.n_layers = 2;
    c.n_heads = 2;
    c.n_kv_heads = 1;  // grouped-query
    c.hidden_dim = 12;
    c.vocab_size = 11;
    c.max_seq_len = 8;
    c.tied_embeddings = tied;
    return c;
}

Tokens sequence(Index count, std::uint64_t seed, Index vocab) {
    Rng rng(seed);
    Tokens t(static_cast<std::size_t>(count));
    for (auto& x : t) x = static_cast<std::int32_t>(rng.next_u64() % static_cast<std::uint64_t>(vocab));
    return t;
}
}  // namespace

TEST_CASE("kernel backward passes match finite differences (double)") {
    SUBCASE("RMSNorm") {
        Mat<double> x = test::gaussian<double>(6, 5, 1), gain = test::gaussian<double>(6, 1, 2), g = test::gaussian<double>(6, 5, 3);
        Mat<double> rstd, d_gain = Mat<double>::Zero(6, 1);
        auto loss = [&] { Mat<double> r; return readout(g, cpu.rmsnorm_forward(x, gain, 1e-5, r)); };
        cpu.rmsnorm_forward(x, gain, 1e-5, rstd);
        const Mat<double> dx = cpu.rmsnorm_backward(g, x, gain, rstd, d_gain);
        CHECK(gradient_error(x, dx, loss) < 1e-8);
        CHECK(gradient_error(gain, d_gain, loss) < 1e-8);
    }
    SUBCASE("SwiGLU") {
        Mat<double> gate = test::gaussian<double>(5, 4, 4), up = test::gaussian<double>(5, 4, 5), g = test::gaussian<double>(5, 4, 6);
        Mat<double> d_gate, d_up;
        cpu.swiglu_backward(g, gate, up, d_gate, d_up);
        auto loss = [&] { return readout(g, cpu.swiglu_forward(gate, up)); };
        CHECK(gradient_error(gate, d_gate, loss) < 1e-8);
        CHECK(gradient_error(up, d_up, loss) < 1e-8);
    }
    SUBCASE("rotary embedding: backward is the inverse rotation") {
        Mat<double> x = test::gaussian<double>(8, 6, 7), g = test::gaussian<double>(8, 6, 8);
        Mat<double> dx = g;
        cpu.rope(dx, 2, 4, 3, rope_frequencies(10000.0, 4), -1);
        auto loss = [&] { Mat<double> y = x; cpu.rope(y, 2, 4, 3, rope_frequencies(10000.0, 4)); return readout(g, y); };
        CHECK(gradient_error(x, dx, loss) < 1e-8);
    }
    SUBCASE("causal grouped-query attention") {
        const AttentionShape shape{4, 2, 3, 5};  // 4 query heads share 2 kv heads; 2 sequences of 5
        Mat<double> q = test::gaussian<double>(12, 10, 9), k = test::gaussian<double>(6, 10, 10),
                    v = test::gaussian<double>(6, 10, 11), g = test::gaussian<double>(12, 10, 12);
        Mat<double> probs, dq, dk, dv;
        cpu.attention_forward(q, k, v, shape, probs);
        cpu.attention_backward(g, q, k, v, probs, shape, dq, dk, dv);
        auto loss = [&] { Mat<double> p; return readout(g, cpu.attention_forward(q, k, v, shape, p)); };
        CHECK(gradient_error(q, dq, loss) < 1e-8);
        CHECK(gradient_error(k, dk, loss) < 1e-8);
        CHECK(gradient_error(v, dv, loss) < 1e-8);
        // Causality: the first query of a sequence sees only itself.
        Mat<double> out = cpu.attention_forward(q, k, v, shape, probs);
        CHECK((out.block(0, 5, 3, 1) - v.block(0, 5, 3, 1)).norm() < 1e-12);
        CHECK(probs(3, 1) == 0.0);  // key 3 is after query 1
        // The forward without saved probabilities (query heads of a kv head
        // side by side) computes the same O.
        CHECK(test::relative_error(cpu.attention_inference(q, k, v, shape), out) < 1e-14);
        const AttentionShape mha{3, 3, 2, 7};  // no grouping, one sequence of 7
        Mat<double> q3 = test::gaussian<double>(6, 7, 17), k3 = test::gaussian<double>(6, 7, 18),
                    v3 = test::gaussian<double>(6, 7, 19);
        CHECK(test::relative_error(cpu.attention_inference(q3, k3, v3, mha), cpu.attention_forward(q3, k3, v3, mha, probs)) <
              1e-14);
        CHECK_THROWS_AS(cpu.attention_inference(q3, k, v3, mha), loranull::error);
    }
    SUBCASE("cross-entropy and embedding") {
        Mat<double> logits = test::gaussian<double>(7, 4, 13);
        const Tokens targets = {0, 6, 3, 3};
        Mat<double> probs;
        cpu.cross_entropy_forward(logits, targets, probs);
        const Mat<double> d = cpu.cross_entropy_backward(probs, targets);
        auto loss = [&] { Mat<double> p; return cpu.cross_entropy_forward(logits, targets, p); };
        CHECK(gradient_error(logits, d, loss) < 1e-8);
        Mat<double> table = test::gaussian<double>(3, 7, 14), g = test::gaussian<double>(3, 4, 15);
        Mat<double> d_table = Mat<double>::Zero(3, 7);
        cpu.embedding_backward(d_table, g, targets);
        auto embed_loss = [&] { return readout(g, cpu.embedding_forward(table, targets)); };
        CHECK(gradient_error(table, d_table, embed_loss) < 1e-8);
    }
    SUBCASE("cross-entropy with ignored targets: the mean over the scored ones, zero gradient elsewhere") {
        Mat<double> logits = test::gaussian<double>(7, 5, 16);
        const Tokens targets = {ignore_target, 6, ignore_target, 3, 1};
        Mat<double> probs, kept_probs;
        const double loss = cpu.cross_entropy_forward(logits, targets, probs);
        Mat<double> kept(7, 3);
        kept << logits.col(1), logits.col(3), logits.col(4);
        CHECK(loss == doctest::Approx(cpu.cross_entropy_forward(kept, Tokens{6, 3, 1}, kept_probs)).epsilon(1e-14));
        const Mat<double> d = cpu.cross_entropy_backward(probs, targets);
        CHECK(d.col(0).norm() == 0.0);
        CHECK(d.col(2).norm() == 0.0);
        auto masked = [&] { Mat<double> p; return cpu.cross_entropy_forward(logits, targets, p); };
        CHECK(gradient_error(logits, d, masked) < 1e-8);
        CHECK_THROWS_AS(cpu.cross_entropy_forward(logits, Tokens(5, ignore_target), probs), loranull::error);
        CHECK_THROWS_AS(cpu.cross_entropy_forward(logits, Tokens{0, 1, 2, -2, 3}, probs), loranull::error);
        CHECK_THROWS_AS(cpu.cross_entropy_backward(probs, Tokens{0, 1, 2, 7, 3}), loranull::error);
    }
}

TEST_CASE("RoPE is Hugging Face's rotate-half and depends only on relative position") {
    // A unit vector in component i of a head rotates into component i + hd/2 by
    // the angle position * theta^(-2i/hd).
    const Index hd = 8, seq = 6;
    Mat<double> x = Mat<double>::Zero(hd, seq);
    x.row(1).setOnes();
    cpu.rope(x, 1, hd, seq, rope_frequencies(10000.0, hd));
    for (Index p = 0; p < seq; ++p) {
        const double angle = double(p) * std::pow(10000.0, -2.0 / 8.0);
        CHECK(x(1, p) == doctest::Approx(std::cos(angle)));
        CHECK(x(1 + hd / 2, p) == doctest::Approx(std::sin(angle)));
    }
    // <rope(q, p1), rope(k, p2)> depends on p1 - p2 only.
    Mat<double> q = test::gaussian<double>(hd, 1, 1), k = test::gaussian<double>(hd, 1, 2);
    auto at = [&](const Mat<double>& v, Index p) {
        Mat<double> seq_of(hd, seq);
        for (Index t = 0; t < seq; ++t) seq_of.col(t) = v;
        cpu.rope(seq_of, 1, hd, seq, rope_frequencies(10000.0, hd));
        return Eigen::VectorXd(seq_of.col(p));
    };
    CHECK(at(q, 4).dot(at(k, 2)) == doctest::Approx(at(q, 3).dot(at(k, 1))));
    CHECK(at(q, 5).dot(at(k, 5)) == doctest::Approx(q.col(0).dot(k.col(0))));
}

TEST_CASE("the whole model's gradients match finite differences, LoRA factors included (double)") {
    for (bool tied : {false, true}) {
        LlamaModel<CpuBackend, double> model(cpu, tiny_config(tied));
        model.init_random(3);
        for (auto& block : model.blocks)  // non-trivial norm gains
            block.mlp_norm += 0.3 * test::gaussian<double>(8, 1, 4);
        // LoRA on q and down of block 0 (B moved off zero so every factor matters),
        // full fine-tuning of everything else.
        model.set_full_finetune(true);
        for (ProjectionKind kind : {ProjectionKind::q, ProjectionKind::down}) {
            auto& p = model.blocks[0][kind];
            auto f = pissa(cpu, p.weight, LoraConfig{2, 3.0, 0});
            f.B += 0.1 * test::gaussian<double>(f.B.rows(), f.B.cols(), 5);
            p.attach(cpu, f, Trainable::both);
        }
        const Tokens tokens = sequence(8, 6, 11), targets = sequence(8, 7, 11);
        model.zero_grad();
        model.loss(tokens, targets, 4);
        model.backward();
        auto loss = [&] { return model.loss(tokens, targets, 4); };
        Index checked = 0;
        for (auto& p : model.parameters()) {
            INFO(p.name);
            REQUIRE(p.grad != nullptr);
            CHECK(gradient_error(*p.value, *p.grad, loss) < 1e-7);
            ++checked;
        }
        CHECK(checked == (tied ? 2 + 2 * (2 + 7) + 2 : 3 + 2 * (2 + 7) + 2));
    }
}

TEST_CASE("adapters at initialisation leave the logits unchanged (LoRA-Null, PiSSA, MiLoRA, CorDA)") {
    LlamaConfig c = tiny_config();
    c.dim = 16;
    c.hidden_dim = 24;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    LlamaModel<CpuBackend, float> model(cpu, c);
    model.init_random(11);
    const Tokens tokens = sequence(32, 12, c.vocab_size);
    const Mat<float> before = model.forward(tokens, 8);

    // One calibration pass: four covariances per block (q/k/v and gate/up share).
    std::vector<std::array<std::optional<Covariance<CpuBackend>>, 4>> covariances(c.n_layers);
    auto hook = [&](Index layer, LinearInput which, const Mat<float>& x) {
        auto& slot = covariances[layer][static_cast<std::size_t>(which)];
        if (!slot) slot.emplace(cpu, x.rows());
        slot->add(x);
    };
    model.forward(sequence(64, 13, c.vocab_size), 8, hook);
    for (const auto& block : covariances)
        for (const auto& cov : block) CHECK(cov->tokens() == 64);

    for (const char* method : {"lora-null", "pissa", "milora", "corda-kpm"}) {
        INFO(method);
        LlamaModel<CpuBackend, float> adapted = model;
        for (Index l = 0; l < c.n_layers; ++l)
            for (ProjectionKind kind : all_projections) {
                auto& p = adapted.blocks[l][kind];
                const auto& cov = *covariances[l][static_cast<std::size_t>(input_of(kind))];
                const LoraConfig config{4, 8.0, 0};
                const std::string m = method;
                auto f = m == "lora-null" ? lora_null(cpu, p.weight, cov, config)
                         : m == "pissa"   ? pissa(cpu, p.weight, config)
                         : m == "milora"  ? milora(cpu, p.weight, config)
                                          : corda_kpm(cpu, p.weight, cov, config);
                p.attach(cpu, std::move(f), m == "lora-null" ? Trainable::B_only : Trainable::both);
            }
        const Mat<float> after = adapted.forward(tokens, 8);
        CHECK(test::relative_error(after, before) < 1e-5);
    }
}

TEST_CASE("a tiny model overfits a fixed batch, a fixed seed gives identical bits") {
    auto train = [](std::uint64_t seed) {
        LlamaModel<CpuBackend, float> model(cpu, tiny_config());
        model.init_random(seed);
        model.set_full_finetune(true);
        AdamW<CpuBackend, float> optimizer;
        const Tokens tokens = sequence(16, 21, 11), targets = sequence(16, 22, 11);
        double loss = 0;
        for (int step = 0; step < 300; ++step) {
            model.zero_grad();
            loss = model.loss(tokens, targets, 8);
            model.backward();
            optimizer.step(cpu, model.parameters(), cosine_lr(step, 300, 10, 1e-2));
        }
        return std::make_pair(loss, Mat<float>(model.forward(tokens, 8)));
    };
    const auto [loss, logits] = train(5);
    CHECK(loss < 0.05);  // ln 11 = 2.4 at the start
    const auto [loss_again, logits_again] = train(5);
    CHECK(loss_again == loss);
    CHECK(logits_again == logits);
}

TEST_CASE("frozen parameters get no gradient, LoRA-only training moves only the factors") {
    LlamaModel<CpuBackend, float> model(cpu, tiny_config());
    model.init_random(1);
    auto& q = model.blocks[1][ProjectionKind::q];
    q.attach(cpu, lora(cpu, q.weight, LoraConfig{2}), Trainable::both);
    model.zero_grad();
    model.loss(sequence(8, 1, 11), sequence(8, 2, 11), 8);
    model.backward();
    Index trainable = 0;
    for (const auto& p : model.parameters())
        if (p.grad) {
            ++trainable;
            CHECK(p.name.find("lora_") != std::string::npos);
        }
    CHECK(trainable == 2);
}

TEST_CASE("checkpoints round-trip with Hugging Face names, sharded and tied ones load") {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / "loranull_test_llama";
    fs::remove_all(dir);
    for (bool tied : {false, true}) {
        LlamaModel<CpuBackend, float> model(cpu, tiny_config(tied));
        model.init_random(tied ? 2 : 1);
        auto& up = model.blocks[0][ProjectionKind::up];
        up.attach(cpu, pissa(cpu, up.weight, LoraConfig{2}), Trainable::both);  // merged on save
        up.lora->B.array() += 0.01f;
        const Tokens tokens = sequence(16, 3, 11);
        const Mat<float> logits = model.forward(tokens, 8);
        const fs::path path = dir / (tied ? "tied" : "untied");
        io::save_hf_checkpoint(model, path);
        auto loaded = io::load_hf_checkpoint<float>(cpu, path);
        CHECK(loaded.config.tied_embeddings == tied);
        CHECK(test::relative_error(loaded.forward(tokens, 8), logits) < 1e-5);
        io::SafetensorsReader file(path / "model.safetensors");
        CHECK(file.info("model.embed_tokens.weight").shape == std::vector<std::int64_t>{11, 8});
        CHECK(file.info("model.layers.1.self_attn.k_proj.weight").shape == std::vector<std::int64_t>{4, 8});
        CHECK(file.contains("lm_head.weight") == !tied);
    }
    // A sharded checkpoint: split the untied one in two files plus an index.
    {
        const fs::path src = dir / "untied", dst = dir / "sharded";
        fs::create_directories(dst);
        fs::copy_file(src / "config.json", dst / "config.json", fs::copy_options::overwrite_existing);
        io::SafetensorsReader whole(src / "model.safetensors");
        io::SafetensorsWriter first, second;
        nlohmann::json map;
        int k = 0;
        for (const auto& [name, info] : whole.tensors()) {
            auto& target = (k++ % 2 == 0) ? first : second;
            target.add(name, whole.read_matrix<float>(name));
            map[name] = (k % 2 == 1) ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
        }
        first.write(dst / "model-00001-of-00002.safetensors");
        second.write(dst / "model-00002-of-00002.safetensors");
        std::ofstream(dst / "model.safetensors.index.json") << nlohmann::json{{"weight_map", map}}.dump();
        auto a = io::load_hf_checkpoint<float>(cpu, src), b = io::load_hf_checkpoint<float>(cpu, dst);
        const Tokens tokens = sequence(8, 4, 11);
        CHECK(a.forward(tokens, 8) == b.forward(tokens, 8));
        fs::remove(dst / "model-00002-of-00002.safetensors");
        CHECK(test::error_message([&] { io::load_hf_checkpoint<float>(cpu, dst); }).find("is missing") != std::string::npos);
    }
    // A tensor of the wrong shape is named.
    {
        const fs::path bad = dir / "bad";
        fs::create_directories(bad);
        fs::copy_file(dir / "untied" / "config.json", bad / "config.json", fs::copy_options::overwrite_existing);
        io::SafetensorsReader whole(dir / "untied" / "model.safetensors");
        io::SafetensorsWriter writer;
        for (const auto& [name, info] : whole.tensors())
            if (name == "model.layers.1.mlp.down_proj.weight") writer.add(name, HostMatrix<float>(8, 11));
            else if (name != "model.norm.weight") writer.add(name, whole.read_matrix<float>(name));
        writer.write(bad / "model.safetensors");
        const std::string message = test::error_message([&] { io::load_hf_checkpoint<float>(cpu, bad); });
        CHECK(message.find("'model.layers.1.mlp.down_proj.weight' has shape [8,11], expected [8, 12]") != std::string::npos);
    }
    CHECK(test::error_message([&] { io::load_hf_checkpoint<float>(cpu, dir / "nowhere"); }).find("not a folder") !=
          std::string::npos);
    // Features this model does not compute are refused, not ignored; the ones
    // it does compute change which tensors it needs and their shapes.
    for (const auto& [key, value, expected] :
         {std::tuple<const char*, nlohmann::json, const char*>{"rope_scaling", {{"rope_type", "yarn"}, {"factor", 8.0}},
                                                                "rope_scaling of type 'yarn' is not supported"},
          {"attention_bias", true, "'model.layers.0.self_attn.q_proj.bias'"},
          {"head_dim", 2, "'model.layers.0.self_attn.q_proj.weight' has shape [8,8], expected [4, 8]"},
          {"partial_rotary_factor", 0.5, "'partial_rotary_factor' = 0.5 is not supported"},
          {"model_type", "gemma", "model_type is \"gemma\""},
          {"hidden_act", "gelu", "hidden_act \"gelu\""}}) {
        const fs::path variant = dir / (std::string("variant-") + key);
        fs::create_directories(variant);
        fs::copy_file(dir / "untied" / "model.safetensors", variant / "model.safetensors", fs::copy_options::overwrite_existing);
        std::ifstream in(dir / "untied" / "config.json");
        nlohmann::json config = nlohmann::json::parse(in);
        config[key] = value;
        std::ofstream(variant / "config.json") << config.dump();
        const std::string message = test::error_message([&] { io::load_hf_checkpoint<float>(cpu, variant); });
        INFO(message);
        CHECK(message.find(expected) != std::string::npos);
    }
}

TEST_CASE("configurations and inputs that do not fit are errors naming the values") {
    auto message = [](LlamaConfig c) { return test::error_message([&] { c.validate(); }); };
    LlamaConfig c = tiny_config();
    c.dim = 9;
    CHECK(message(c).find("dim 9 is not divisible by n_heads 2") != std::string::npos);
    c = tiny_config();
    c.n_kv_heads = 3;
    c.n_heads = 4;
    CHECK(message(c).find("n_heads 4 is not divisible by n_kv_heads 3") != std::string::npos);
    LlamaModel<CpuBackend, float> model(cpu, tiny_config());
    CHECK(test::error_message([&] { model.forward(sequence(16, 1, 11), 16); }).find("outside 1 .. max_seq_len = 8") !=
          std::string::npos);
    CHECK(test::error_message([&] { model.forward(Tokens{1, 2, 11}, 3); }).find("token id 11") != std::string::npos);
    CHECK(test::error_message([&] { model.forward(Tokens{1, 2, 3}, 2); }).find("whole sequences") != std::string::npos);
    CHECK(test::error_message([&] { model.backward(); }).find("call loss() first") != std::string::npos);
}
