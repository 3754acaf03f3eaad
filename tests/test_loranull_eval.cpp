// loranull-eval run as a user runs it: the NLL of a checkpoint equals the
// model's own cross-entropy, a PEFT adapter is merged as PEFT does
// (lora_alpha / r, alpha_pattern, use_rslora), loranull-build's residual model
// plus its adapter reproduces the base model, --logits-out holds the logits,
// and every bad input is one line and an exit status.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "run_tool.hpp"
#include "test_util.hpp"

using namespace loranull;
using test::Mat;
using test::q;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {
CpuBackend cpu;

const fs::path& dir() { return test::scratch_dir("test_eval"); }

test::ToolResult eval(const std::string& args) { return test::run_tool(LORANULL_EVAL_PATH, args, dir()); }
test::ToolResult build(const std::string& args) { return test::run_tool(LORANULL_BUILD_PATH, args, dir()); }

LlamaConfig config() {
    LlamaConfig c;
    c.dim = 16;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.hidden_dim = 24;
    c.vocab_size = 29;
    c.max_seq_len = 16;
    c.biases = BiasScheme::qkv;  // Qwen2-like: biases pass through everything
    c.model_type = "qwen2";
    return c;
}

std::vector<std::int32_t> ids(Index samples, Index seq_len) {
    std::vector<std::int32_t> out;
    for (Index i = 0; i < samples * seq_len; ++i) out.push_back(std::int32_t((7 * i + i * i + 3) % config().vocab_size));
    return out;
}

void write_ids(const fs::path& path, Index samples, Index seq_len) {
    const auto t = ids(samples, seq_len);
    io::SafetensorsWriter w;
    w.add_integers("input_ids", std::vector<std::int64_t>(t.begin(), t.end()), {samples, seq_len});
    w.write(path);
}

/// "nll X nats/token, ..." -> X.
double nll_of(const std::string& out) {
    const auto at = out.find("nll ");
    REQUIRE(at != std::string::npos);
    return std::stod(out.substr(at + 4));
}

/// The model's own mean next-token cross-entropy (the oracle for loranull-eval).
double model_nll(LlamaModel<CpuBackend, float>& model, Index samples, Index seq_len) {
    const auto tokens = ids(samples, seq_len);
    double total = 0;
    for (Index s = 0; s < samples; ++s) {
        const std::vector<std::int32_t> seq(tokens.begin() + s * seq_len, tokens.begin() + (s + 1) * seq_len);
        std::vector<std::int32_t> targets(seq.begin() + 1, seq.end());
        targets.push_back(ignore_target);
        total += model.loss(seq, targets, seq_len) * double(seq_len - 1);
    }
    return total / double(samples * (seq_len - 1));
}

struct Fixture {
    fs::path model = dir() / "model", calib = dir() / "ids.safetensors";
    Fixture() {
        LlamaModel<CpuBackend, float> m(cpu, config());
        m.init_random(5);
        io::save_hf_checkpoint(m, model);
        write_ids(calib, 6, 12);
    }
};
const Fixture& fixture() {
    static const Fixture f;
    return f;
}

}  // namespace

TEST_CASE("loranull-eval: the NLL is the model's cross-entropy, and --logits-out holds the logits") {
    const Fixture& fx = fixture();
    const fs::path logits = dir() / "logits.safetensors";
    const auto r = eval("--model " + q(fx.model) + " --calib " + q(fx.calib) + " --batch 4 --logits-out " + q(logits));
    INFO(r.err);
    REQUIRE(r.status == 0);
    CHECK(r.out.find("sequences 6 x 12, predictions 66") != std::string::npos);
    LlamaModel<CpuBackend, float> model = io::load_hf_checkpoint<float>(cpu, fx.model);
    const double expected = model_nll(model, 6, 12);
    CHECK(nll_of(r.out) == doctest::Approx(expected).epsilon(1e-6));
    const double ppl = std::stod(r.out.substr(r.out.find("perplexity ") + 11));
    CHECK(ppl == doctest::Approx(std::exp(expected)).epsilon(1e-6));

    const io::SafetensorsReader file(logits);
    const io::TensorInfo& info = file.info("logits");
    CHECK(info.dtype == io::Dtype::F32);
    CHECK(info.shape == std::vector<std::int64_t>{6, 12, 29});
    // Sequence 4, all positions: the file's [4, t, v] against a forward of that sequence.
    const auto tokens = ids(6, 12);
    const std::vector<std::int32_t> seq(tokens.begin() + 4 * 12, tokens.begin() + 5 * 12);
    const Mat<float> direct = model.forward(seq, 12);  // vocab x 12
    std::ifstream in(logits, std::ios::binary);
    unsigned char length[8];
    in.read(reinterpret_cast<char*>(length), 8);
    std::uint64_t header = 0;
    for (int i = 7; i >= 0; --i) header = (header << 8) | length[i];
    in.seekg(std::streamoff(8 + header + info.begin + 4 * 12 * 29 * sizeof(float)));
    std::vector<float> values(12 * 29);
    in.read(reinterpret_cast<char*>(values.data()), std::streamsize(values.size() * sizeof(float)));
    double worst = 0;
    for (Index t = 0; t < 12; ++t)
        for (Index v = 0; v < 29; ++v)
            worst = std::max(worst, double(std::abs(values[std::size_t(t * 29 + v)] - direct(v, t))));
    CHECK(worst <= 1e-5 * direct.cwiseAbs().maxCoeff());
}

TEST_CASE("loranull-eval: a PEFT adapter is merged as W + (lora_alpha / r) B A, alpha_pattern (regex keys) and rslora included") {
    const Fixture& fx = fixture();
    const fs::path adapter = dir() / "adapter";
    fs::create_directories(adapter);
    const Mat<float> a = test::gaussian<float>(2, 16, 1) * 0.3f, b = test::gaussian<float>(16, 2, 2) * 0.3f;
    const Mat<float> a2 = test::gaussian<float>(3, 24, 3) * 0.3f, b2 = test::gaussian<float>(16, 3, 4) * 0.3f;
    io::SafetensorsWriter w;
    w.add("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", cpu.download(a));
    w.add("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", cpu.download(b));
    w.add("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight", cpu.download(a2));
    w.add("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight", cpu.download(b2));
    w.write(adapter / "adapter_model.safetensors");
    for (const bool rslora : {false, true}) {
        INFO("use_rslora ", rslora);
        json config = {{"peft_type", "LORA"}, {"r", 2}, {"lora_alpha", 6}, {"target_modules", {"q_proj", "down_proj"}},
                       {"bias", "none"}, {"use_rslora", rslora}, {"alpha_pattern", {{"layers\\.[1-3]\\.mlp\\.down_proj", 12}}}};  // a regex, as PEFT reads it
        std::ofstream(adapter / "adapter_config.json") << config.dump();
        const auto r = eval("--model " + q(fx.model) + " --adapter " + q(adapter) + " --calib " + q(fx.calib));
        INFO(r.err);
        REQUIRE(r.status == 0);
        // The oracle: the merged weights written by hand, the model's own NLL.
        LlamaModel<CpuBackend, float> model = io::load_hf_checkpoint<float>(cpu, fx.model);
        const double s1 = rslora ? 6 / std::sqrt(2.0) : 6 / 2.0, s2 = rslora ? 12 / std::sqrt(3.0) : 12 / 3.0;
        auto& wq = model.blocks[0][ProjectionKind::q].weight;
        auto& wd = model.blocks[1][ProjectionKind::down].weight;
        wq = (wq.cast<double>() + s1 * b.cast<double>() * a.cast<double>()).cast<float>();
        wd = (wd.cast<double>() + s2 * b2.cast<double>() * a2.cast<double>()).cast<float>();
        CHECK(nll_of(r.out) == doctest::Approx(model_nll(model, 6, 12)).epsilon(1e-6));
    }
}

TEST_CASE("loranull-eval: loranull-build's residual model plus its adapter reproduces the base model's NLL (1e-5)") {
    const Fixture& fx = fixture();
    const auto base = eval("--model " + q(fx.model) + " --calib " + q(fx.calib));
    REQUIRE(base.status == 0);
    for (const char* method : {"lora-null", "pissa", "corda-kpm"}) {
        INFO(method);
        const fs::path out = dir() / (std::string("built-") + method);
        const auto built = build("--model " + q(fx.model) + " --calib " + q(fx.calib) + " --method " + method +
                                 " --rank 3 --alpha 6 --out " + q(out));
        INFO(built.err);
        REQUIRE(built.status == 0);
        const auto residual_only = eval("--model " + q(out / "model") + " --calib " + q(fx.calib));
        const auto merged = eval("--model " + q(out / "model") + " --adapter " + q(out / "adapter") + " --calib " + q(fx.calib));
        INFO(merged.err);
        REQUIRE(merged.status == 0);
        const double expected = nll_of(base.out), got = nll_of(merged.out);
        MESSAGE(std::string(method), ": base NLL ", expected, ", residual + adapter ", got, ", residual alone ", nll_of(residual_only.out));
        CHECK(std::abs(got - expected) <= 1e-5 * expected);
        // Without the adapter the NLL moves (for LoRA-Null least: its adapter holds
        // the calibration data's least-used directions, 3e-5 relative here).
        CHECK(nll_of(residual_only.out) != doctest::Approx(expected).epsilon(1e-5));
    }
}

TEST_CASE("loranull-eval: every bad input is one error line and an exit status") {
    const Fixture& fx = fixture();
    const fs::path bad = dir() / "bad";
    fs::create_directories(bad);
    write_ids(bad / "long.safetensors", 2, 20);  // 20 > max_position_embeddings 16
    io::SafetensorsWriter oov;
    oov.add_integers("input_ids", std::vector<std::int64_t>(24, 29), {2, 12});
    oov.write(bad / "oov.safetensors");
    fs::create_directories(bad / "no_config");
    fs::create_directories(bad / "dora");
    std::ofstream(bad / "dora" / "adapter_config.json") << json{{"peft_type", "LORA"}, {"r", 2}, {"lora_alpha", 2}, {"use_dora", true}}.dump();
    fs::create_directories(bad / "foreign");
    std::ofstream(bad / "foreign" / "adapter_config.json") << json{{"peft_type", "LORA"}, {"r", 2}, {"lora_alpha", 2}}.dump();
    {
        io::SafetensorsWriter w;
        w.add("base_model.model.lm_head.lora_A.weight", HostMatrix<float>(2, 16, 0.1f));
        w.add("base_model.model.lm_head.lora_B.weight", HostMatrix<float>(29, 2, 0.1f));
        w.write(bad / "foreign" / "adapter_model.safetensors");
    }
    // Numerical bad input: a NaN in a factor; a lora_alpha whose merge overflows float.
    for (const auto& [name, alpha, value] : {std::tuple<std::string, double, float>{"nan_factor", 2.0, std::nanf("")},
                                             {"overflow", 1e300, 1.0f}}) {
        fs::create_directories(bad / name);
        std::ofstream(bad / name / "adapter_config.json") << json{{"peft_type", "LORA"}, {"r", 2}, {"lora_alpha", alpha}}.dump();
        io::SafetensorsWriter w;
        HostMatrix<float> a(2, 16, 0.1f);
        a(1, 3) = value;
        w.add("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", a);
        w.add("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", HostMatrix<float>(16, 2, 0.1f));
        w.write(bad / name / "adapter_model.safetensors");
    }
    const std::string m = " --model " + q(fx.model), c = " --calib " + q(fx.calib);
    struct Case {
        std::string args;
        int status;
        std::string message;
    };
    const std::vector<Case> cases{
        {c, 2, "missing --model"},
        {m, 2, "give one of --calib and --calib-text"},
        {m + c + " --seq-len 1", 2, "--seq-len must be at least 2"},
        {m + c + " --batch 0", 2, "--batch must be at least 1"},
        {m + c + " --frobnicate 1", 2, "unknown option '--frobnicate'"},
        {" --model " + q(bad / "no_config") + c, 1, "config.json"},
        {m + " --calib " + q(bad / "long.safetensors"), 1, "exceed max_position_embeddings = 16"},
        {m + " --calib " + q(bad / "oov.safetensors"), 1, "is outside the vocabulary"},
        {m + c + " --samples 7", 1, "--samples 7 exceeds the 6 sequences"},
        {m + c + " --adapter " + q(bad / "nowhere"), 1, "is not a folder"},
        {m + c + " --adapter " + q(bad / "dora"), 1, "use_dora = true is not supported"},
        {m + c + " --adapter " + q(bad / "foreign"), 1, "module lm_head is not a projection of this model"},
        {m + c + " --adapter " + q(bad / "nan_factor"), 1, "module model.layers.0.self_attn.q_proj holds NaN or Inf"},
        {m + c + " --adapter " + q(bad / "overflow"), 1, "module model.layers.0.self_attn.q_proj: W + 5e+299 B A overflows"},
    };
    for (const Case& k : cases) {
        const auto r = eval(k.args);
        INFO(k.args, "\n", r.err);
        CHECK(r.status == k.status);
        CHECK(test::line_count(r.err) == 1);
        CHECK(r.err.rfind("loranull-eval: error: ", 0) == 0);
        CHECK(r.err.find(k.message) != std::string::npos);
    }
}
