// The model family the tools load (SPEC.md section 9): LLaMA 2, 3, 3.1, 3.2,
// Mistral and Qwen2, each as a tiny random checkpoint with its family's real
// config.json layout, loaded and run by the library, and checked against an
// independent float64 forward written here in plain loops (not the model's
// code): RoPE frequencies (default, linear, llama3), explicit head_dim, GQA,
// biases, tied embeddings. Then the block-streamed builder on each: exact
// adapters, biases unchanged, none in the adapter.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <numbers>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "family_fixtures.hpp"
#include "run_tool.hpp"
#include "test_util.hpp"

using namespace loranull;
using test::Mat;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {
CpuBackend cpu;

const fs::path& dir() { return test::scratch_dir("test_families"); }

using test_family::Family;
using test_family::families;

fs::path write_family(const Family& f) { return test_family::write_family(f, dir()); }

// --- an independent float64 forward, in plain loops -----------------------------

using Vec = std::vector<double>;

/// A tensor of the checkpoint as a row-major [rows][cols] table of doubles.
struct Weights {
    io::SafetensorsReader file;
    explicit Weights(const fs::path& path) : file(path / "model.safetensors") {}
    bool has(const std::string& name) const { return file.contains(name); }
    std::vector<Vec> rows(const std::string& name) const {
        const HostMatrix<double> m = file.read_matrix<double>(name);
        std::vector<Vec> out(static_cast<std::size_t>(m.rows()), Vec(static_cast<std::size_t>(m.cols())));
        for (Index i = 0; i < m.rows(); ++i)
            for (Index j = 0; j < m.cols(); ++j) out[std::size_t(i)][std::size_t(j)] = m(i, j);
        return out;
    }
    Vec vector(const std::string& name) const {
        Vec v;
        for (const Vec& row : rows(name)) v.insert(v.end(), row.begin(), row.end());
        return v;
    }
};

Vec affine(const std::vector<Vec>& w, const Vec& x, const Vec* bias) {
    Vec y(w.size(), 0.0);
    for (std::size_t i = 0; i < w.size(); ++i) {
        for (std::size_t j = 0; j < x.size(); ++j) y[i] += w[i][j] * x[j];
        if (bias) y[i] += (*bias)[i];
    }
    return y;
}

Vec rms_norm(const Vec& x, const Vec& gain, double eps) {
    double mean_square = 0;
    for (double v : x) mean_square += v * v / double(x.size());
    Vec y(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] / std::sqrt(mean_square + eps) * gain[i];
    return y;
}

/// HF's inverse frequencies, from the config.json keys directly.
Vec inverse_frequencies(const json& c, int head_dim) {
    const double theta = c.value("rope_theta", 10000.0);
    Vec f(std::size_t(head_dim / 2));
    for (int i = 0; i < head_dim / 2; ++i) f[std::size_t(i)] = 1.0 / std::pow(theta, double(2 * i) / head_dim);
    if (!c.contains("rope_scaling") || c["rope_scaling"].is_null()) return f;
    const json& s = c["rope_scaling"];
    const std::string type = s.contains("rope_type") ? s["rope_type"] : s["type"];
    const double factor = s["factor"];
    if (type == "linear")
        for (double& x : f) x /= factor;
    if (type == "llama3") {
        const double old_len = s["original_max_position_embeddings"], low = s["low_freq_factor"], high = s["high_freq_factor"];
        for (double& x : f) {
            const double wavelength = 2 * std::numbers::pi / x;
            const double scaled = wavelength > old_len / low ? x / factor : x;
            const double smooth = (old_len / wavelength - low) / (high - low);
            const bool medium = !(wavelength < old_len / high) && !(wavelength > old_len / low);
            x = medium ? (1 - smooth) * scaled / factor + smooth * scaled : scaled;
        }
    }
    return f;  // dynamic: unchanged within max_position_embeddings
}

/// Logits [position][vocab] of one sequence.
std::vector<Vec> reference_logits(const fs::path& path, const json& c, const std::vector<int>& tokens) {
    const Weights w(path);
    const int d = c["hidden_size"], heads = c["num_attention_heads"], layers = c["num_hidden_layers"];
    const int kv_heads = c.value("num_key_value_heads", heads);
    const int hd = c.contains("head_dim") ? int(c["head_dim"]) : d / heads;
    const double eps = c["rms_norm_eps"];
    const Vec freq = inverse_frequencies(c, hd);
    const std::vector<Vec> embed = w.rows("model.embed_tokens.weight");
    const std::size_t T = tokens.size();
    std::vector<Vec> x(T);
    for (std::size_t t = 0; t < T; ++t) x[t] = embed[std::size_t(tokens[t])];
    auto bias = [&](const std::string& name, Vec& storage) -> const Vec* {
        if (!w.has(name)) return nullptr;
        storage = w.vector(name);
        return &storage;
    };
    auto rotate = [&](Vec& v, int n_heads, std::size_t position) {
        for (int h = 0; h < n_heads; ++h)
            for (int i = 0; i < hd / 2; ++i) {
                const double angle = double(position) * freq[std::size_t(i)];
                double& a = v[std::size_t(h * hd + i)];
                double& b = v[std::size_t(h * hd + i + hd / 2)];
                const double x1 = a, x2 = b;
                a = x1 * std::cos(angle) - x2 * std::sin(angle);
                b = x2 * std::cos(angle) + x1 * std::sin(angle);
            }
    };
    for (int l = 0; l < layers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        const Vec g1 = w.vector(p + "input_layernorm.weight"), g2 = w.vector(p + "post_attention_layernorm.weight");
        Vec bq, bk, bv, bo, bg, bu, bd;
        const auto wq = w.rows(p + "self_attn.q_proj.weight"), wk = w.rows(p + "self_attn.k_proj.weight"),
                   wv = w.rows(p + "self_attn.v_proj.weight"), wo = w.rows(p + "self_attn.o_proj.weight"),
                   wg = w.rows(p + "mlp.gate_proj.weight"), wu = w.rows(p + "mlp.up_proj.weight"),
                   wd = w.rows(p + "mlp.down_proj.weight");
        const Vec* q_bias = bias(p + "self_attn.q_proj.bias", bq);
        const Vec* k_bias = bias(p + "self_attn.k_proj.bias", bk);
        const Vec* v_bias = bias(p + "self_attn.v_proj.bias", bv);
        const Vec* o_bias = bias(p + "self_attn.o_proj.bias", bo);
        std::vector<Vec> q(T), k(T), v(T);
        for (std::size_t t = 0; t < T; ++t) {
            const Vec n = rms_norm(x[t], g1, eps);
            q[t] = affine(wq, n, q_bias);
            k[t] = affine(wk, n, k_bias);
            v[t] = affine(wv, n, v_bias);
            rotate(q[t], heads, t);
            rotate(k[t], kv_heads, t);
        }
        for (std::size_t t = 0; t < T; ++t) {
            Vec attention(std::size_t(heads * hd), 0.0);
            for (int h = 0; h < heads; ++h) {
                const int g = h / (heads / kv_heads);
                Vec score(t + 1);
                double top = -1e300, total = 0;
                for (std::size_t s = 0; s <= t; ++s) {
                    double dot = 0;
                    for (int i = 0; i < hd; ++i) dot += q[t][std::size_t(h * hd + i)] * k[s][std::size_t(g * hd + i)];
                    score[s] = dot / std::sqrt(double(hd));
                    top = std::max(top, score[s]);
                }
                for (double& s : score) total += (s = std::exp(s - top));
                for (std::size_t s = 0; s <= t; ++s)
                    for (int i = 0; i < hd; ++i)
                        attention[std::size_t(h * hd + i)] += score[s] / total * v[s][std::size_t(g * hd + i)];
            }
            const Vec o = affine(wo, attention, o_bias);
            for (int i = 0; i < d; ++i) x[t][std::size_t(i)] += o[std::size_t(i)];
        }
        const Vec* g_bias = bias(p + "mlp.gate_proj.bias", bg);
        const Vec* u_bias = bias(p + "mlp.up_proj.bias", bu);
        const Vec* d_bias = bias(p + "mlp.down_proj.bias", bd);
        for (std::size_t t = 0; t < T; ++t) {
            const Vec n = rms_norm(x[t], g2, eps);
            const Vec gate = affine(wg, n, g_bias), up = affine(wu, n, u_bias);
            Vec h(gate.size());
            for (std::size_t i = 0; i < h.size(); ++i) h[i] = gate[i] / (1 + std::exp(-gate[i])) * up[i];
            const Vec down = affine(wd, h, d_bias);
            for (int i = 0; i < d; ++i) x[t][std::size_t(i)] += down[std::size_t(i)];
        }
    }
    const Vec final_gain = w.vector("model.norm.weight");
    const std::vector<Vec> head = w.has("lm_head.weight") ? w.rows("lm_head.weight") : embed;
    std::vector<Vec> logits(T);
    for (std::size_t t = 0; t < T; ++t) logits[t] = affine(head, rms_norm(x[t], final_gain, eps), nullptr);
    return logits;
}

}  // namespace

TEST_CASE("every family loads and its logits equal an independent float64 forward within 1e-4 (float32)") {
    const std::vector<int> tokens = {3, 17, 42, 0, 8, 8, 25, 49, 11, 30};
    std::vector<std::int32_t> ids(tokens.begin(), tokens.end());
    for (const Family& f : families()) {
        INFO(f.name);
        const fs::path path = write_family(f);
        LlamaModel<CpuBackend, float> model = io::load_hf_checkpoint<float>(cpu, path);
        const Mat<float> logits = model.forward(ids, Index(ids.size()));  // vocab x T
        const std::vector<Vec> expected = reference_logits(path, f.config, tokens);
        double diff = 0, norm = 0;
        for (std::size_t t = 0; t < tokens.size(); ++t)
            for (std::size_t v = 0; v < expected[t].size(); ++v) {
                diff = std::max(diff, std::abs(double(logits(Index(v), Index(t))) - expected[t][v]));
                norm = std::max(norm, std::abs(expected[t][v]));
            }
        MESSAGE(f.name, ": max |logit - reference| / max |reference| = ", diff / norm);
        CHECK(diff <= 1e-4 * norm);
    }
}

TEST_CASE("the families' keys: shapes follow head_dim, biases where the family has them, the window refused beyond") {
    const auto all = families();
    auto config = [&](const std::string& name) {
        for (const Family& f : all)
            if (f.name == name) return io::detail::config_from_json(f.config, name);
        FAIL("no family ", name);
        return LlamaConfig{};
    };
    const LlamaConfig mistral = config("mistral"), qwen2 = config("qwen2"), biased = config("llama-biased");
    CHECK(projection_shape(mistral, ProjectionKind::q) == std::array<Index, 2>{40, 24});  // 4 heads x head_dim 10
    CHECK(projection_shape(mistral, ProjectionKind::o) == std::array<Index, 2>{24, 40});
    CHECK(mistral.sliding_window == 12);
    CHECK(qwen2.sliding_window == 0);  // use_sliding_window false
    CHECK((has_bias(qwen2, ProjectionKind::q) && has_bias(qwen2, ProjectionKind::v) && !has_bias(qwen2, ProjectionKind::o)));
    for (ProjectionKind kind : all_projections) CHECK(has_bias(biased, kind));
    CHECK(config("llama-3.1").rope_scaling.type == RopeScaling::Type::llama3);
    CHECK(config("llama-3.2").tied_embeddings);

    // Mistral without the key: transformers' default window of 4096; null: none.
    json no_key = all[5].config, null_key = all[5].config;
    no_key.erase("sliding_window");
    null_key["sliding_window"] = nullptr;
    CHECK(io::detail::config_from_json(no_key, "mistral").sliding_window == 4096);
    CHECK(io::detail::config_from_json(null_key, "mistral").sliding_window == 0);
    // llama3 rope scaling needs its four keys, as transformers does.
    json partial = all[2].config;
    partial["rope_scaling"].erase("low_freq_factor");
    CHECK(test::error_message([&] { io::detail::config_from_json(partial, "llama-3.1"); })
              .find("rope_scaling of type llama3 needs a number low_freq_factor") != std::string::npos);

    const fs::path path = write_family(all[5]);  // mistral
    LlamaModel<CpuBackend, float> model = io::load_hf_checkpoint<float>(cpu, path);
    const std::string message =
        test::error_message([&] { model.forward(std::vector<std::int32_t>(13, 1), 13); });
    CHECK(message.find("sequences of 13 tokens exceed the model's sliding_window of 12") != std::string::npos);
    // The builder refuses such calibration before it writes anything.
    io::SafetensorsWriter calib;
    calib.add_integers("input_ids", std::vector<std::int64_t>(2 * 13, 1), {2, 13});
    calib.write(path / "long.safetensors");
    pipeline::BuildOptions o;
    o.model = path.string();
    o.calib = (path / "long.safetensors").string();
    o.rank = 2;
    o.out = (dir() / "mistral-refused").string();
    const std::string refused = test::error_message([&] { pipeline::AdapterBuilder<CpuBackend>(cpu, o).run(); });
    CHECK(refused.find("sequences of 13 tokens exceed the sliding_window of 12") != std::string::npos);
    CHECK(!fs::exists(o.out));

    // The llama3 bands: a short wave kept, a medium one smoothed, long ones divided by the factor.
    const std::vector<double> f = rope_frequencies(config("llama-3.1"));
    const std::vector<double> plain = rope_frequencies(10000.0, 6);
    REQUIRE(f.size() == 3);
    CHECK(f[0] == plain[0]);
    CHECK((f[1] < plain[1] && f[1] > plain[1] / 8));
    CHECK(f[2] == doctest::Approx(plain[2] / 8).epsilon(1e-15));
}

TEST_CASE("loranull's builder on every family: exact residual + s B A = W, biases copied unchanged, none in the adapter") {
    for (const Family& f : families()) {
        INFO(f.name);
        const fs::path path = write_family(f);
        const LlamaConfig config = io::detail::config_from_json(f.config, f.name);
        std::vector<std::int64_t> ids;
        for (int i = 0; i < 6 * 12; ++i) ids.push_back((11 * i + 7) % config.vocab_size);
        io::SafetensorsWriter calib;
        calib.add_integers("input_ids", ids, {6, 12});
        calib.write(path / "calib.safetensors");
        pipeline::BuildOptions o;
        o.model = path.string();
        o.calib = (path / "calib.safetensors").string();
        o.method = "lora-null";
        o.rank = 4;
        o.out = (dir() / (f.name + "-out")).string();
        pipeline::AdapterBuilder<CpuBackend>(cpu, o).run();

        const io::SafetensorsReader original(path / "model.safetensors");
        const io::SafetensorsReader residual(fs::path(o.out) / "model" / "model.safetensors");
        const io::SafetensorsReader adapter(fs::path(o.out) / "adapter" / "adapter_model.safetensors");
        Index biases = 0;
        for (const auto& [name, info] : original.tensors()) {
            if (name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0) {
                ++biases;
                CHECK(residual.read_matrix<double>(name).data()[0] == original.read_matrix<double>(name).data()[0]);
                CHECK(cpu.upload(residual.read_matrix<double>(name)) == cpu.upload(original.read_matrix<double>(name)));
            }
        }
        for (const auto& [name, info] : adapter.tensors()) CHECK(name.find(".bias") == std::string::npos);
        CHECK(biases == (config.qkv_has_bias() ? 3 : 0) * 2 + (config.attention_has_bias() ? 2 : 0) +
                            (config.mlp_has_bias() ? 6 : 0));
        for (Index l = 0; l < config.n_layers; ++l)
            for (ProjectionKind kind : all_projections) {
                const std::string m = "model.layers." + std::to_string(l) + "." + projection_path(kind);
                const Mat<double> w = cpu.upload(original.read_matrix<double>(m + ".weight"));
                const Mat<double> w_res = cpu.upload(residual.read_matrix<double>(m + ".weight"));
                const Mat<double> a = cpu.upload(adapter.read_matrix<double>("base_model.model." + m + ".lora_A.weight"));
                const Mat<double> b = cpu.upload(adapter.read_matrix<double>("base_model.model." + m + ".lora_B.weight"));
                CHECK((w_res + b * a - w).norm() <= 1e-5 * w.norm());
            }
        // The residual model loads (biases and all).
        CHECK_NOTHROW(io::load_hf_checkpoint<float>(cpu, fs::path(o.out) / "model"));
    }
}
