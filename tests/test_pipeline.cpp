// The pipeline as library code: the method table and its one dispatch
// (lora/methods.hpp), the block calibration (llama/calibration.hpp), the
// covariance form of the knowledge report, the rank-2r conversion, and
// AdapterBuilder<CpuBackend> instantiated directly, without the tool.
#include <doctest/doctest.h>

#include <filesystem>
#include <memory>
#include <set>
#include <tuple>
#include <string>
#include <vector>

#include "run_tool.hpp"
#include "test_util.hpp"

using namespace loranull;
using test::Mat;
namespace fs = std::filesystem;

namespace {
CpuBackend cpu;

/// A tiny LLaMA: GQA (4 heads on 2 kv heads), dim 16, 3 blocks.
LlamaConfig tiny_config() {
    LlamaConfig config;
    config.dim = 16;
    config.n_layers = 3;
    config.n_heads = 4;
    config.n_kv_heads = 2;
    config.hidden_dim = 40;
    config.vocab_size = 30;
    config.max_seq_len = 16;
    return config;
}

/// A tiny HF checkpoint (tiny_config, untied) and calibration ids [samples, seq_len].
struct Checkpoint {
    LlamaConfig config = tiny_config();
    fs::path dir, calib;
    std::vector<std::int32_t> tokens;
    Index samples = 6, seq_len = 12;

    explicit Checkpoint(const std::string& name) {
        dir = test::scratch_dir("test_pipeline") / name;
        calib = test::scratch_dir("test_pipeline") / (name + ".calib.safetensors");
        LlamaModel<CpuBackend, float> model(cpu, config);
        model.init_random(11);
        io::save_hf_checkpoint(model, dir);
        std::vector<std::int64_t> ids;
        for (Index i = 0; i < samples * seq_len; ++i) {
            ids.push_back((13 * i + 5) % config.vocab_size);
            tokens.push_back(static_cast<std::int32_t>(ids.back()));
        }
        io::SafetensorsWriter w;
        w.add_integers("input_ids", ids, {samples, seq_len});
        w.write(calib);
    }
};

/// Covariance matrices equal to the last bit.
void check_same(const Covariance<CpuBackend, double>& a, const Covariance<CpuBackend, double>& b) {
    CHECK(a.tokens() == b.tokens());
    CHECK(a.samples() == b.samples());
    CHECK(a.matrix() == b.matrix());
}

}  // namespace

TEST_CASE("methods: every name parses to its row, unknown names list the known ones") {
    std::set<std::string> names;
    for (const MethodInfo& m : method_table) {
        CHECK(&parse_method(m.name) == &m);
        CHECK(find_method(m.name) == &m);
        names.insert(std::string(m.name));
    }
    CHECK(names.size() == std::size(method_table));  // no name twice
    for (const char* expected : {"lora", "pissa", "pissa-fast", "milora", "corda-kpm", "corda-ipm", "lora-null",
                                 "lora-null-v1", "lora-null-v2", "olora", "eva"})
        CHECK(names.count(expected) == 1);
    CHECK(parse_method("lora-null-v2").trainable == Trainable::B_only);
    CHECK(parse_method("lora-null-v1").trainable == Trainable::both);
    CHECK(parse_method("lora-null-v2").method == parse_method("lora-null").method);
    CHECK(method_info(Method::lora_null).name == "lora-null");
    CHECK(find_method("dora") == nullptr);
    const std::string message = test::error_message([] { parse_method("dora"); });
    CHECK(message.find("unknown method 'dora'") != std::string::npos);
    CHECK(message.find(method_names()) != std::string::npos);
}

TEST_CASE("initialise: the dispatch computes what each initialiser computes, and needs data where the method does") {
    const Mat<double> w = test::gaussian<double>(9, 12, 3);
    Covariance<CpuBackend, double> cov(cpu, 12);
    cov.add(test::gaussian<double>(12, 40, 4));
    const Mat<double> c = cov.matrix();
    const LoraConfig config{3, 6.0, 5};
    const MethodData<CpuBackend, double> with_cov{&cov, nullptr, nullptr}, with_matrix{nullptr, &c, nullptr};
    const auto same = [](const LoraFactors<CpuBackend, double>& a, const LoraFactors<CpuBackend, double>& b) {
        CHECK(a.A == b.A);
        CHECK(a.B == b.B);
        CHECK(a.W_res == b.W_res);
        CHECK(a.scale == b.scale);
    };
    same(initialise(cpu, w, Method::lora, {}, config), lora(cpu, w, config));
    same(initialise(cpu, w, Method::pissa, {}, config), pissa(cpu, w, config));
    same(initialise(cpu, w, Method::pissa_fast, {}, config), pissa_fast(cpu, w, config));
    same(initialise(cpu, w, Method::milora, {}, config), milora(cpu, w, config));
    same(initialise(cpu, w, Method::olora, {}, config), olora(cpu, w, config));
    same(initialise(cpu, w, Method::corda_kpm, with_cov, config), corda_kpm(cpu, w, cov, config));
    same(initialise(cpu, w, Method::corda_ipm, with_matrix, config), corda_ipm(cpu, w, c, config));
    same(initialise(cpu, w, Method::eva, with_cov, config), eva(cpu, w, cov, config));
    same(initialise(cpu, w, Method::lora_null, with_cov, config), lora_null(cpu, w, cov, config));
    const auto basis = null_space(cov, 3);
    same(initialise(cpu, w, Method::lora_null, MethodData<CpuBackend, double>{nullptr, nullptr, &basis}, config),
         lora_null(cpu, w, basis, config));
    for (Method m : {Method::corda_kpm, Method::corda_ipm, Method::lora_null, Method::eva})
        CHECK(test::error_message([&] { initialise(cpu, w, m, MethodData<CpuBackend, double>{}, config); })
                  .find("needs calibration data") != std::string::npos);
    // Every method reproduces W (the residual methods exactly, up to rounding).
    for (const MethodInfo& m : method_table)
        CHECK(reconstruction_error(cpu, w, initialise(cpu, w, m.method, with_cov, config)) < 1e-13);
}

TEST_CASE("calibration: shapes from the config, and ModelCalibration equals the model's hooks and block_forward") {
    const Checkpoint ck("calibration");
    const LlamaConfig& c = ck.config;
    CHECK(projection_shape(c, ProjectionKind::k) == std::array<Index, 2>{c.n_kv_heads * c.head_dim(), c.dim});
    CHECK(projection_shape(c, ProjectionKind::down) == std::array<Index, 2>{c.dim, c.hidden_dim});
    CHECK(input_dim(c, LinearInput::down_in) == c.hidden_dim);
    CHECK(input_dim(c, LinearInput::o_in) == c.dim);
    CHECK(max_rank(c) == 8);  // k and v: 2 kv heads x head_dim 4
    CHECK(std::string(input_name(LinearInput::mlp_in)) == "mlp_in");

    LlamaModel<CpuBackend, float> model = io::load_hf_checkpoint<float>(cpu, ck.dir);
    ModelCalibration<CpuBackend> helper(cpu, c, Normalisation::plain, "test");
    helper.calibrate(model, ck.tokens, ck.seq_len);

    // By hand: the hook feeding one Covariance per (layer, input).
    std::vector<std::array<std::optional<Covariance<CpuBackend, double>>, 4>> by_hand(3);
    model.forward(ck.tokens, ck.seq_len, [&](Index layer, LinearInput input, const Mat<float>& x) {
        auto& slot = by_hand[static_cast<std::size_t>(layer)][static_cast<std::size_t>(input)];
        if (!slot) slot.emplace(cpu, x.rows(), Normalisation::plain, "test");
        slot->add_samples(x, ck.seq_len);
    });
    // Block by block, as the builder streams it.
    Mat<float> hidden = cpu.embedding_forward(model.embed, ck.tokens);
    for (Index l = 0; l < c.n_layers; ++l) {
        BlockCalibration<CpuBackend> block(cpu, c, Normalisation::plain, "test");
        hidden = LlamaModel<CpuBackend, float>::block_forward(
            cpu, c, model.blocks[static_cast<std::size_t>(l)], l, hidden, ck.seq_len,
            [&](Index, LinearInput input, const Mat<float>& x) { block.add(input, x, ck.seq_len); });
        for (LinearInput input : all_inputs) {
            check_same(helper.block(l).covariance(input), *by_hand[static_cast<std::size_t>(l)][static_cast<std::size_t>(input)]);
            check_same(block.covariance(input), helper.block(l).covariance(input));
        }
        for (ProjectionKind kind : all_projections)
            CHECK(&helper.block(l).covariance(kind) == &helper.block(l).covariance(input_of(kind)));
    }
}

TEST_CASE("block_forward: fused q/k/v and gate/up give the unfused output, and the output hook's ||W X||^2 is <W C, W>") {
    const Checkpoint ck("fused");
    const LlamaConfig& c = ck.config;
    LlamaModel<CpuBackend, float> model = io::load_hf_checkpoint<float>(cpu, ck.dir);
    using Model = LlamaModel<CpuBackend, float>;
    Model::Block block = model.blocks[1];
    // Biases (Qwen2's q/k/v) stay outside the stacked product and outside W X.
    block[ProjectionKind::q].bias = test::gaussian<float>(c.q_dim(), 1, 20);
    block[ProjectionKind::v].bias = test::gaussian<float>(c.kv_dim(), 1, 21);
    const Mat<float> x = cpu.embedding_forward(model.embed, ck.tokens);
    for (Normalisation normalisation : {Normalisation::plain, Normalisation::reference}) {
        BlockCalibration<CpuBackend> separate(cpu, c, normalisation, "test"), fused_cal(cpu, c, normalisation, "test");
        auto hooks = [&](BlockCalibration<CpuBackend>& cal) {
            return std::pair{Model::Hook([&](Index, LinearInput input, const Mat<float>& in) { cal.add(input, in, ck.seq_len); }),
                             Model::OutputHook([&](Index, ProjectionKind kind, const Mat<float>& y) {
                                 cal.add_output(kind, y, ck.seq_len);
                             })};
        };
        separate.expect_outputs();
        fused_cal.expect_outputs();
        const auto [in1, out1] = hooks(separate);
        const Mat<float> y1 = Model::block_forward(cpu, c, block, 1, x, ck.seq_len, in1, out1);
        Model::Block fused = block;
        Model::fuse_products(cpu, fused);
        CHECK(fused.fused());
        CHECK(fused.qkv_weight.rows() == c.q_dim() + 2 * c.kv_dim());
        CHECK(fused.gate_up_weight.rows() == 2 * c.hidden_dim);
        CHECK(fused[ProjectionKind::q].weight.size() == 0);  // moved, not copied
        const auto [in2, out2] = hooks(fused_cal);
        const Mat<float> y2 = Model::block_forward(cpu, c, fused, 1, x, ck.seq_len, in2, out2);
        CHECK(test::relative_error(y2, y1) < 1e-6);
        for (ProjectionKind kind : all_projections) {
            const Mat<double> w = block[kind].weight.cast<double>();
            const Mat<double> cm = separate.covariance(kind).matrix();
            const double expected = (w * cm).cwiseProduct(w).sum();  // <W C, W>
            CHECK(separate.output_energy(kind) == doctest::Approx(expected).epsilon(1e-5));
            CHECK(fused_cal.output_energy(kind) == doctest::Approx(expected).epsilon(1e-5));
        }
    }
    // Without outputs added (no expect_outputs), there is no output energy.
    BlockCalibration<CpuBackend> none(cpu, c, Normalisation::plain, "test");
    CHECK(none.output_energy(ProjectionKind::q) == -1);
    // A fused block is forward-only, and only dense blocks fuse.
    Model::Block adapted = block;
    adapted[ProjectionKind::k].attach(cpu, lora(cpu, adapted[ProjectionKind::k].weight, LoraConfig{2}), Trainable::B_only);
    CHECK(test::error_message([&] { Model::fuse_products(cpu, adapted); }).find("self_attn.k_proj") != std::string::npos);
    Model::fuse_products(cpu, model.blocks[0]);
    CHECK(test::error_message([&] {
              model.loss(ck.tokens, ck.tokens, ck.seq_len);
              model.backward();
          }).find("fused") != std::string::npos);
}

TEST_CASE("block_null_spaces warns when an fp32-panel null space lies within 1000x of float rounding") {
    const LlamaConfig c = tiny_config();
    const Index rank = 4, tokens = 400;
    // Activations whose r = 4 smallest covariance eigenvalues are `floor` of
    // the largest and the rest at least 1e-4: well separated, never deficient.
    // fp32 panels of 400 tokens round C by ~2 eps_f / sqrt(400) = 1.2e-8 of
    // lambda_max: 1e-9 is below it, 1e-3 far above.
    auto calibration = [&](double floor, Accumulation accumulation) {
        auto cal = std::make_unique<BlockCalibration<CpuBackend>>(cpu, c, Normalisation::plain, "deep", accumulation);
        for (LinearInput input : all_inputs) {
            const Index n = input_dim(c, input);
            const Mat<double> q = cpu.thin_q(test::gaussian<double>(n, n, 70 + n));
            Mat<double> z = test::gaussian<double>(n, tokens, 80 + n);
            for (Index i = 0; i < n; ++i)
                z.row(i) *= std::sqrt(i < rank ? floor : std::pow(10.0, -4.0 * double(n - 1 - i) / double(n - 1)));
            cal->add(input, Mat<float>((q * z).cast<float>()), tokens);
        }
        return cal;
    };
    const MethodInfo& method = *find_method("lora-null");
    pipeline::BuildOptions o;
    o.rank = rank;
    for (auto [floor, accumulation, warns] : {std::tuple{1e-9, Accumulation::fp32_panels, true},
                                              std::tuple{1e-9, Accumulation::fp64, false},
                                              std::tuple{1e-3, Accumulation::fp32_panels, false}}) {
        CAPTURE(floor);
        o.accumulation = accumulation;
        const auto cal = calibration(floor, accumulation);
        std::vector<std::string> warnings;
        const auto spaces = pipeline::block_null_spaces(o, method, 0, cal.get(), cal->matrices(), warnings);
        REQUIRE(spaces);
        CHECK(warnings.size() == (warns ? 4u : 0u));
        if (warns) {
            CHECK(warnings[0].find("layer 0 attn_in") != std::string::npos);
            CHECK(warnings[0].find("--accumulate fp64") != std::string::npos);
        }
    }
}

TEST_CASE("initial_knowledge_report from C equals the quantities computed from the activations X") {
    const Index n = 10, m = 7, tokens = 50;
    const Mat<double> x = test::gaussian<double>(n, tokens, 8), w = test::gaussian<double>(m, n, 9);
    Covariance<CpuBackend, double> cov(cpu, n);
    cov.add(x);
    const auto f = lora_null(cpu, w, cov, LoraConfig{3, 6.0});
    const InitialKnowledgeReport r = initial_knowledge_report(cpu, w, f.A, f.scale, cov.matrix());
    // From X: Q spans A0's rows; energy = ||X^T Q||^2 / ||X||^2, bound = s ||A0||_2 ||X^T Q|| / ||W X||, tight = s ||A0 X|| / ||W X||.
    const Mat<double> q = cpu.thin_q(cpu.transpose(f.A));
    const double xq = (x.transpose() * q).norm(), wx = (w * x).norm(), a0x = (f.A * x).norm();
    const double a_norm = cpu.thin_svd(f.A).singular_values.at(0);
    CHECK(r.energy == doctest::Approx(xq * xq / x.squaredNorm()).epsilon(1e-10));
    CHECK(r.bound == doctest::Approx(f.scale * a_norm * xq / wx).epsilon(1e-10));
    CHECK(r.tight == doctest::Approx(f.scale * a0x / wx).epsilon(1e-10));
    CHECK(r.tight <= r.bound * (1 + 1e-12));  // the first inequality of SPEC.md section 4
    // Any A0 (here plain LoRA's random one, rows not in a null space), and
    // ||W X||^2 / c given by the caller instead of computed.
    const auto g = lora(cpu, w, LoraConfig{3, 6.0, 5});
    const InitialKnowledgeReport any = initial_knowledge_report(cpu, w, g.A, g.scale, cov.matrix());
    const Mat<double> qa = cpu.thin_q(cpu.transpose(g.A));
    const double xqa = (x.transpose() * qa).norm(), a0xa = (g.A * x).norm();
    CHECK(any.energy == doctest::Approx(xqa * xqa / x.squaredNorm()).epsilon(1e-10));
    CHECK(any.bound == doctest::Approx(g.scale * cpu.thin_svd(g.A).singular_values.at(0) * xqa / wx).epsilon(1e-10));
    CHECK(any.tight == doctest::Approx(g.scale * a0xa / wx).epsilon(1e-10));
    const InitialKnowledgeReport given =
        initial_knowledge_report(cpu, w, g.A, g.scale, cov.matrix(), wx * wx / double(tokens));
    CHECK(given.bound == doctest::Approx(any.bound).epsilon(1e-12));
    CHECK(given.tight == doctest::Approx(any.tight).epsilon(1e-12));
}

TEST_CASE("plain_lora is LoraLinear::to_plain_lora, and its product is s (B A - B0 A0)") {
    const Mat<double> w = test::gaussian<double>(6, 8, 12);
    LoraLinear<CpuBackend, double> layer(cpu, pissa(cpu, w, LoraConfig{2, 4.0}), Trainable::both);
    layer.A += test::gaussian<double>(2, 8, 13) * 0.1;
    layer.B += test::gaussian<double>(6, 2, 14) * 0.1;
    const auto a = layer.to_plain_lora();
    const auto b = plain_lora(cpu, layer.A, layer.B, layer.A0, layer.B0, layer.scale);
    CHECK(a.down == b.down);
    CHECK(a.up == b.up);
    const Mat<double> expected = layer.scale * (layer.B * layer.A - layer.B0 * layer.A0);
    CHECK((b.up * b.down - expected).norm() <= 1e-14 * expected.norm());
}

TEST_CASE("AdapterBuilder<CpuBackend> from a test, without the tool: outputs, exact factors, resumption, refusals") {
    const Checkpoint ck("builder");
    pipeline::BuildOptions o;
    o.model = ck.dir.string();
    o.calib = ck.calib.string();
    o.method = "lora-null";
    o.rank = 3;
    o.alpha = 6;
    o.out = (test::scratch_dir("test_pipeline") / "built").string();
    Index started_total = -1, blocks_written = 0;
    pipeline::BuildProgress progress;
    progress.start = [&](Index total, Index) { started_total = total; };
    progress.block_written = [&](const std::string&) { ++blocks_written; };
    const pipeline::BuildResult result = pipeline::AdapterBuilder<CpuBackend>(cpu, o, progress).run();
    CHECK(!result.already_finished);
    CHECK(!result.stopped);
    CHECK(started_total == 3);
    CHECK(blocks_written == 3);
    CHECK(result.report["layers"].size() == 3);
    CHECK(!fs::exists(fs::path(o.out) / "blocks"));  // removed after assembly

    // Residual + s B A reproduces every original weight; A's rows lie in the
    // null space of that block's input covariance (checked through the report's
    // energy: the same quantity the null space reports).
    const io::SafetensorsReader original(ck.dir / "model.safetensors");
    const io::SafetensorsReader residual(fs::path(o.out) / "model" / "model.safetensors");
    const io::SafetensorsReader adapter(fs::path(o.out) / "adapter" / "adapter_model.safetensors");
    for (Index l = 0; l < 3; ++l)
        for (ProjectionKind kind : all_projections) {
            const std::string module = "model.layers." + std::to_string(l) + "." + projection_path(kind);
            const Mat<double> w = cpu.upload(original.read_matrix<double>(module + ".weight"));
            const Mat<double> w_res = cpu.upload(residual.read_matrix<double>(module + ".weight"));
            const Mat<double> a = cpu.upload(adapter.read_matrix<double>("base_model.model." + module + ".lora_A.weight"));
            const Mat<double> b = cpu.upload(adapter.read_matrix<double>("base_model.model." + module + ".lora_B.weight"));
            CHECK((w_res + o.scale() * b * a - w).norm() <= 1e-5 * w.norm());  // F32 files
        }
    for (const auto& layer : result.report["layers"])
        for (const auto& module : layer["modules"])
            CHECK(double(module["energy"]) == doctest::Approx(double(module["null_space_energy"])).epsilon(1e-6));

    // A second run with the same settings does nothing; a stopped run resumes
    // to the same files.
    CHECK(pipeline::AdapterBuilder<CpuBackend>(cpu, o).run().already_finished);
    pipeline::BuildOptions stopped = o;
    stopped.out = (test::scratch_dir("test_pipeline") / "resumed").string();
    stopped.stop_after_blocks = 1;
    CHECK(pipeline::AdapterBuilder<CpuBackend>(cpu, stopped).run().stopped);
    stopped.stop_after_blocks = -1;
    CHECK(!pipeline::AdapterBuilder<CpuBackend>(cpu, stopped).run().stopped);
    CHECK(test::slurp(fs::path(stopped.out) / "adapter" / "adapter_model.safetensors") ==
          test::slurp(fs::path(o.out) / "adapter" / "adapter_model.safetensors"));

    // Refusals carry their kind: a request (exit 2 in the tool) or an input (exit 1).
    auto kind_of = [&](pipeline::BuildOptions bad) {
        bad.out = (test::scratch_dir("test_pipeline") / "refused").string();
        try {
            pipeline::AdapterBuilder<CpuBackend>(cpu, bad).run();
        } catch (const pipeline::BuildError& e) {
            CHECK(!fs::exists(bad.out));  // nothing written
            return std::pair{e.kind(), std::string(e.what())};
        }
        FAIL("no BuildError");
        return std::pair{pipeline::BuildError::Kind::input, std::string()};
    };
    pipeline::BuildOptions no_data = o;
    no_data.calib.clear();
    auto [kind, message] = kind_of(no_data);
    CHECK(kind == pipeline::BuildError::Kind::request);
    CHECK(message == "method lora-null needs calibration data: give --calib TOKENS.safetensors");
    pipeline::BuildOptions too_wide = o;
    too_wide.rank = 9;
    std::tie(kind, message) = kind_of(too_wide);
    CHECK(kind == pipeline::BuildError::Kind::input);
    CHECK(message.find("--rank 9 exceeds min(out, in) = 8 of self_attn.k_proj") == 0);
    pipeline::BuildOptions bad_layers = o;
    bad_layers.layers = "1-3";
    std::tie(kind, message) = kind_of(bad_layers);
    CHECK(kind == pipeline::BuildError::Kind::request);
    CHECK(message.find("--layers: '1-3' is not a range within 0 .. 2") == 0);
}
