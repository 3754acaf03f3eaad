// io/peft.hpp: the PEFT adapter folder, read back from disk. Residual mode:
// W_res + (lora_alpha / r) B A is the trained layer (and W at init); plain mode:
// W + up down is the trained layer, rank 2r or re-truncated; tensor names,
// shapes, dtypes and adapter_config.json fields as PEFT expects them.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <loranull/io/peft.hpp>

#include "test_util.hpp"

using namespace loranull;
using test::Mat;
namespace fs = std::filesystem;

namespace {
CpuBackend cpu;

/// Folders of this process only (ctest runs test cases in parallel, each in
/// its own process, and the float and double cases use the same names),
/// removed at exit.
struct TempRoot {
    fs::path path = fs::temp_directory_path() / ("loranull_test_peft_" + std::to_string(::getpid()));
    ~TempRoot() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

fs::path fresh_dir(const std::string& name) {
    static const TempRoot root;
    const fs::path dir = root.path / name;
    fs::remove_all(dir);
    return dir;
}

nlohmann::json read_json(const fs::path& path) {
    std::ifstream in(path);
    REQUIRE(bool(in));
    return nlohmann::json::parse(in);
}

Mat<double> read(const io::SafetensorsReader& reader, const std::string& name) {
    return cpu.upload(reader.read_matrix<double>(name));
}

/// A layer "after training": factors from `init`, then B (and A) moved.
template <class T>
LoraLinear<CpuBackend, T> trained_layer(LoraFactors<CpuBackend, T> factors, std::uint64_t seed) {
    LoraLinear<CpuBackend, T> layer(cpu, std::move(factors));
    layer.B += T(0.1) * test::gaussian<T>(layer.B.rows(), layer.B.cols(), seed);
    layer.A += T(0.05) * test::gaussian<T>(layer.A.rows(), layer.A.cols(), seed + 1);
    return layer;
}

/// Two layers of different shapes, as in a transformer block: q_proj (8 x 12)
/// with LoRA-Null from a rank-deficient covariance, down_proj (12 x 20) with PiSSA.
struct TwoLayers {
    Mat<double> w_q = test::gaussian<double>(8, 12, 11);
    Mat<double> w_down = test::gaussian<double>(12, 20, 12);
    LoraConfig config{3, 12.0, 5};  // r = 3, alpha = 12: s = 4
    LoraFactors<CpuBackend, double> f_q, f_down;

    TwoLayers() {
        const Mat<double> x = test::gaussian<double>(12, 9, 13);  // 9 tokens < n: a genuine null space
        Covariance<CpuBackend> c(cpu, 12);
        c.add(x);
        f_q = lora_null(cpu, w_q, c, config);
        f_down = pissa(cpu, w_down, config);
    }
};

const std::string q_module = "model.layers.0.self_attn.q_proj";
const std::string down_module = "model.layers.0.mlp.down_proj";
}  // namespace

TEST_CASE("peft residual mode: names, shapes, dtype, config, W_res + (alpha/r) B A is the trained layer") {
    TwoLayers setup;
    const auto q = trained_layer(setup.f_q, 21);
    const auto down = trained_layer(setup.f_down, 22);

    io::PeftExporter<CpuBackend> peft(cpu, {.mode = io::PeftMode::residual, .dtype = io::Dtype::F32,
                                            .base_model_name_or_path = "tiny-llama"});
    peft.add(q_module, q);
    peft.add(down_module, down);
    const fs::path dir = fresh_dir("residual");
    const io::PeftExportReport report = peft.write(dir);

    CHECK(report.r == 3);
    CHECK(report.lora_alpha == doctest::Approx(12.0));
    REQUIRE(report.files.size() == 3);
    CHECK(report.files.back().filename() == "adapter_config.json");
    for (const auto& entry : fs::directory_iterator(dir)) CHECK(entry.path().extension() != ".tmp");

    io::SafetensorsReader adapter(dir / "adapter_model.safetensors");
    CHECK(adapter.tensors().size() == 4);
    CHECK(adapter.metadata().at("format") == "pt");
    CHECK(adapter.metadata().at("loranull.mode") == "residual");
    CHECK(adapter.metadata().at("loranull.methods").find("q_proj=lora-null") != std::string::npos);
    const std::string qa = "base_model.model." + q_module + ".lora_A.weight";
    const std::string qb = "base_model.model." + q_module + ".lora_B.weight";
    const std::string da = "base_model.model." + down_module + ".lora_A.weight";
    const std::string db = "base_model.model." + down_module + ".lora_B.weight";
    CHECK(adapter.info(qa).shape == std::vector<std::int64_t>{3, 12});
    CHECK(adapter.info(qb).shape == std::vector<std::int64_t>{8, 3});
    CHECK(adapter.info(da).shape == std::vector<std::int64_t>{3, 20});
    CHECK(adapter.info(db).shape == std::vector<std::int64_t>{12, 3});
    for (const auto& [name, info] : adapter.tensors()) CHECK(info.dtype == io::Dtype::F32);

    io::SafetensorsReader residual(dir / "residual_model.safetensors");
    CHECK(residual.tensors().size() == 2);
    CHECK(residual.info(q_module + ".weight").shape == std::vector<std::int64_t>{8, 12});
    CHECK(residual.info(down_module + ".weight").shape == std::vector<std::int64_t>{12, 20});

    const nlohmann::json config = read_json(dir / "adapter_config.json");
    CHECK(config["peft_type"] == "LORA");
    CHECK(config["task_type"] == "CAUSAL_LM");
    CHECK(config["r"] == 3);
    CHECK(config["lora_alpha"] == 12);
    CHECK(config["lora_alpha"].is_number_integer());
    CHECK(config["target_modules"] == nlohmann::json::array({"down_proj", "q_proj"}));
    CHECK(config["bias"] == "none");
    CHECK(config["fan_in_fan_out"] == false);
    CHECK(config["lora_dropout"] == 0.0);
    CHECK(config["inference_mode"] == true);
    CHECK(config["init_lora_weights"] == true);
    CHECK(config["base_model_name_or_path"] == "tiny-llama");
    CHECK(config["rank_pattern"] == nlohmann::json::object());
    CHECK(config["alpha_pattern"] == nlohmann::json::object());
    CHECK(config == peft.config_json());

    // What PEFT computes: W_res + (lora_alpha / r) B A, in fp32 storage.
    const double scaling = config["lora_alpha"].get<double>() / config["r"].get<double>();
    CHECK(scaling == doctest::Approx(4.0));
    const Mat<double> q_merged = read(residual, q_module + ".weight") + scaling * read(adapter, qb) * read(adapter, qa);
    const Mat<double> d_merged =
        read(residual, down_module + ".weight") + scaling * read(adapter, db) * read(adapter, da);
    CHECK(test::relative_error(q_merged, q.merged()) < 1e-6);
    CHECK(test::relative_error(d_merged, down.merged()) < 1e-6);
    // ... and the untrained part is the original weight.
    CHECK(test::relative_error(Mat<double>(q.merged() - scaling * q.B * q.A + scaling * q.B0 * q.A0), setup.w_q) < 1e-12);
}

TEST_CASE("peft residual mode at initialisation, F16 and BF16: W_res + s B0 A0 = W to the storage precision") {
    TwoLayers setup;
    for (io::Dtype dtype : {io::Dtype::F16, io::Dtype::BF16}) {
        INFO(io::dtype_name(dtype));
        const fs::path dir = fresh_dir(std::string("init_") + std::string(io::dtype_name(dtype)));
        // The one-call form over initialiser output.
        const std::vector<std::pair<std::string, LoraFactors<CpuBackend, double>>> modules{{q_module, setup.f_q},
                                                                                          {down_module, setup.f_down}};
        io::write_peft_adapter(cpu, dir, modules, {.mode = io::PeftMode::residual, .dtype = dtype});
        io::SafetensorsReader adapter(dir / "adapter_model.safetensors");
        io::SafetensorsReader residual(dir / "residual_model.safetensors");
        for (const auto& [name, info] : adapter.tensors()) CHECK(info.dtype == dtype);
        for (const auto& [name, info] : residual.tensors()) CHECK(info.dtype == dtype);
        const double unit = dtype == io::Dtype::F16 ? 1.0 / 1024 : 1.0 / 128;  // 2^-10, 2^-7
        const nlohmann::json config = read_json(dir / "adapter_config.json");
        const double scaling = config["lora_alpha"].get<double>() / config["r"].get<double>();
        for (const auto& [module, w] : {std::pair{q_module, setup.w_q}, std::pair{down_module, setup.w_down}}) {
            const Mat<double> merged = read(residual, module + ".weight") +
                                       scaling * read(adapter, "base_model.model." + module + ".lora_B.weight") *
                                           read(adapter, "base_model.model." + module + ".lora_A.weight");
            CHECK(test::relative_error(merged, w) < 4 * unit);
        }
    }
}

TEST_CASE_TEMPLATE("peft plain mode: rank 2r, lora_alpha = 2r, W + up down is the trained layer, re-truncation",
                   T, float, double) {
    TwoLayers setup;
    const auto q = trained_layer(LoraFactors<CpuBackend, T>{setup.f_q.A.cast<T>(), setup.f_q.B.cast<T>(),
                                                            setup.f_q.W_res.cast<T>(), T(setup.f_q.scale), "lora-null"},
                                 31);
    const auto down = trained_layer(LoraFactors<CpuBackend, T>{setup.f_down.A.cast<T>(), setup.f_down.B.cast<T>(),
                                                               setup.f_down.W_res.cast<T>(), T(setup.f_down.scale),
                                                               "pissa"},
                                    32);
    const double tolerance = std::is_same_v<T, float> ? 1e-5 : 1e-6;  // F32 storage either way

    SUBCASE("full rank 2r") {
        io::PeftExporter<CpuBackend> peft(cpu, {.mode = io::PeftMode::plain});
        peft.add(q_module, q, setup.w_q.cast<T>());  // checked against the original weight
        peft.add(down_module, down);
        const fs::path dir = fresh_dir("plain_full");
        const auto report = peft.write(dir);
        CHECK(report.files.size() == 2);
        CHECK_FALSE(fs::exists(dir / "residual_model.safetensors"));
        const nlohmann::json config = read_json(dir / "adapter_config.json");
        CHECK(config["r"] == 6);
        CHECK(config["lora_alpha"] == 6);
        io::SafetensorsReader adapter(dir / "adapter_model.safetensors");
        CHECK(adapter.metadata().at("loranull.mode") == "plain");
        const Mat<double> up = read(adapter, "base_model.model." + q_module + ".lora_B.weight");
        const Mat<double> dn = read(adapter, "base_model.model." + q_module + ".lora_A.weight");
        CHECK(up.rows() == 8);
        CHECK(up.cols() == 6);
        CHECK(dn.rows() == 6);
        CHECK(dn.cols() == 12);
        CHECK(test::relative_error(Mat<double>(setup.w_q + up * dn), q.merged()) < tolerance);
        const Mat<double> up_d = read(adapter, "base_model.model." + down_module + ".lora_B.weight");
        const Mat<double> dn_d = read(adapter, "base_model.model." + down_module + ".lora_A.weight");
        CHECK(test::relative_error(Mat<double>(setup.w_down + up_d * dn_d), down.merged()) < tolerance);
        CHECK(report.modules[0].truncation_error_frobenius == 0);
    }
    SUBCASE("re-truncated to rank r, the error reported is the error made") {
        io::PeftExporter<CpuBackend> peft(cpu, {.mode = io::PeftMode::plain, .dtype = io::Dtype::F32, .plain_rank = 3});
        peft.add(q_module, q);
        peft.add(down_module, down);
        const fs::path dir = fresh_dir("plain_truncated");
        const auto report = peft.write(dir);
        const nlohmann::json config = read_json(dir / "adapter_config.json");
        CHECK(config["r"] == 3);
        CHECK(config["lora_alpha"] == 3);
        io::SafetensorsReader adapter(dir / "adapter_model.safetensors");
        for (std::size_t k = 0; k < 2; ++k) {
            const auto& module = k == 0 ? q_module : down_module;
            const auto& layer = k == 0 ? q : down;
            const Mat<double> w = k == 0 ? setup.w_q : setup.w_down;
            const Mat<double> up = read(adapter, "base_model.model." + module + ".lora_B.weight");
            const Mat<double> dn = read(adapter, "base_model.model." + module + ".lora_A.weight");
            CHECK(up.cols() == 3);
            CHECK(dn.rows() == 3);
            const Mat<double> delta = layer.merged().template cast<double>() - w;
            const double error = (delta - up * dn).norm();
            const auto& m = report.modules[k];
            CHECK(m.rank == 3);
            CHECK(m.truncation_error_frobenius > 0);
            CHECK(error == doctest::Approx(m.truncation_error_frobenius).epsilon(1e-3));
            CHECK(m.relative_truncation_error == doctest::Approx(error / delta.norm()).epsilon(1e-3));
            CHECK(m.truncation_error_spectral <= m.truncation_error_frobenius + 1e-12);
            // Eckart-Young: the best rank-3 approximation.
            Eigen::JacobiSVD<Mat<double>> svd(delta);
            const auto& s = svd.singularValues();
            CHECK(error == doctest::Approx(s.tail(s.size() - 3).norm()).epsilon(1e-3));
        }
    }
}

TEST_CASE("peft: modules of different ranks and scales go to rank_pattern and alpha_pattern") {
    TwoLayers setup;
    const auto f_small = pissa(cpu, setup.w_down, LoraConfig{2, 2.0, 0});  // r = 2, s = 1
    io::PeftExporter<CpuBackend> peft(cpu);
    peft.add(q_module, setup.f_q);                            // r = 3, alpha 12
    peft.add("model.layers.1.mlp.down_proj", f_small);        // r = 2, alpha 2
    peft.add("model.layers.1.self_attn.q_proj", setup.f_q);   // same as the first
    const nlohmann::json config = peft.config_json();
    CHECK(config["r"] == 3);
    CHECK(config["lora_alpha"] == 12);
    // Keyed by the path without its first component: PEFT's old `.*\.KEY$` and
    // new `(.*\.)?(KEY)$` both match it against the module's full name.
    CHECK(config["rank_pattern"] == nlohmann::json{{"layers.1.mlp.down_proj", 2}});
    CHECK(config["alpha_pattern"] == nlohmann::json{{"layers.1.mlp.down_proj", 2}});
    CHECK(config["target_modules"] == nlohmann::json::array({"down_proj", "q_proj"}));

    // A non-integral lora_alpha stays a float.
    io::PeftExporter<CpuBackend> odd(cpu);
    odd.add(q_module, pissa(cpu, setup.w_q, LoraConfig{4, 6.0, 0}));  // s = 1.5, alpha = 6
    odd.add(down_module, pissa(cpu, setup.w_down, LoraConfig{3, 1.0, 0}));  // s = 1/3, alpha = 1
    CHECK(odd.config_json()["lora_alpha"] == 6);
    CHECK(odd.config_json()["alpha_pattern"]["layers.0.mlp.down_proj"].get<double>() == doctest::Approx(1.0));
}

TEST_CASE("peft: bad input is a clear error and writes nothing") {
    TwoLayers setup;
    auto message = [](auto&& f) { return test::error_message(f); };
    CHECK(message([] { io::PeftExporter<CpuBackend>(cpu, {.dtype = io::Dtype::F64}); }).find("F32, F16 or BF16") !=
          std::string::npos);
    CHECK(message([] { io::PeftExporter<CpuBackend>(cpu, {.dtype = io::Dtype::I32}); }).find("dtype I32") !=
          std::string::npos);
    CHECK(message([] { io::PeftExporter<CpuBackend>(cpu, {.residual_file = "../x.safetensors"}); })
              .find("not a plain file name") != std::string::npos);

    io::PeftExporter<CpuBackend> peft(cpu);
    const fs::path dir = fresh_dir("errors");
    CHECK(message([&] { peft.write(dir); }).find("no modules") != std::string::npos);
    CHECK_FALSE(fs::exists(dir / "adapter_config.json"));
    CHECK(message([&] { peft.add("", setup.f_q); }).find("module path") != std::string::npos);
    CHECK(message([&] { peft.add("model..q_proj", setup.f_q); }).find("module path") != std::string::npos);
    CHECK(message([&] { peft.add("model.q proj", setup.f_q); }).find("character ' '") != std::string::npos);
    peft.add(q_module, setup.f_q);
    CHECK(message([&] { peft.add(q_module, setup.f_down); }).find("added twice") != std::string::npos);

    // A plain adapter cannot be exported as residual.
    LoraLinear<CpuBackend, double> layer(cpu, setup.f_q);
    CHECK(message([&] { peft.add("model.other", layer.to_plain_lora()); }).find("plain mode") != std::string::npos);

    // NaN in a factor.
    auto broken = setup.f_down;
    broken.B(0, 0) = std::numeric_limits<double>::quiet_NaN();
    CHECK(message([&] { peft.add(down_module, broken); }).find("NaN") != std::string::npos);

    // Plain mode checked against the wrong base weight.
    io::PeftExporter<CpuBackend> plain(cpu, {.mode = io::PeftMode::plain});
    CHECK(message([&] { plain.add(q_module, layer, Mat<double>(setup.w_q * 1.1)); }).find("not the weight") !=
          std::string::npos);
    CHECK(message([&] { peft.add("model.other", layer, Mat<double>(setup.w_q * 1.1)); }).find("not the weight") !=
          std::string::npos);  // residual mode checks too
    // The exporter still works after the failed adds.
    CHECK(peft.size() == 1);
    peft.write(dir);
    CHECK(fs::exists(dir / "adapter_config.json"));
}
