// The loranull-init tool, run as a user would run it (std::system on the built
// binary, whose path CMake passes as LORANULL_INIT_PATH): a weights file with
// two layers of different shapes in F32 and BF16, every method, the output read
// back (W_res + s B A = W; LoRA-Null's A orthogonal to the activations' top
// directions; the metadata), and every error case (exit status != 0, one clear
// line on stderr, no output file).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "run_tool.hpp"
#include "test_util.hpp"

#ifndef LORANULL_INIT_PATH
#error "LORANULL_INIT_PATH (the loranull-init binary) must be defined by the build"
#endif

using namespace loranull;
using test::Mat;
namespace fs = std::filesystem;

namespace {
CpuBackend cpu;

using test::q;
using test::slurp;
using Result = test::ToolResult;

const fs::path& dir() { return test::scratch_dir("test_init"); }

fs::path file(const std::string& name) { return dir() / name; }

/// Runs loranull-init with `args` (already quoted where needed).
Result run(const std::string& args) { return test::run_tool(LORANULL_INIT_PATH, args, dir()); }

/// A safetensors file written by hand (the writer only writes 2-D matrices
/// and integers): `header` lists the tensors, `data` their bytes.
void write_raw(const fs::path& path, const std::string& header, const std::string& data) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>(std::uint64_t(header.size()) >> (8 * i)));
    out << header << data;
}

const std::string q_proj = "model.layers.0.self_attn.q_proj";   // 8 x 12
const std::string down_proj = "model.layers.0.mlp.down_proj";   // 12 x 20
constexpr Index rank = 3;

/// X (tokens x n) of rank exactly n - r: X = G V^T with V (n x (n - r))
/// orthonormal, so the activations' null space is exactly span(V)^perp.
struct Activations {
    Mat<double> v;  // n x (n - r): the "top directions"
    Mat<double> x;  // tokens x n
    Activations(Index n, Index tokens, std::uint64_t seed)
        : v(test::orthonormal<double>(n, n - rank, seed)),
          x(test::gaussian<double>(tokens, n - rank, seed + 1) * v.transpose()) {}
};

struct Inputs {
    Mat<double> w_q = test::gaussian<double>(8, 12, 101);
    Mat<double> w_down = test::gaussian<double>(12, 20, 102);
    Activations x_q{12, 40, 103};
    Activations x_down{20, 50, 104};

    Inputs() {
        for (io::Dtype dtype : {io::Dtype::F32, io::Dtype::BF16}) {
            io::SafetensorsWriter w;
            w.add(q_proj + ".weight", cpu.download(w_q), dtype);
            w.add(down_proj + ".weight", cpu.download(w_down), dtype);
            w.add(q_proj + ".bias", cpu.download(Mat<double>(Mat<double>::Ones(8, 1))), dtype);  // ignored
            w.add_integers("model.step", {7}, {1});                                           // ignored
            w.write(file(std::string("w_") + std::string(io::dtype_name(dtype)) + ".safetensors"));
        }
        io::SafetensorsWriter x;  // F32 activations: rounding keeps the null space to ~1e-7
        x.add(q_proj, cpu.download(x_q.x), io::Dtype::F32);
        x.add(down_proj, cpu.download(x_down.x), io::Dtype::F32);
        x.add("unused", cpu.download(x_q.x), io::Dtype::F32);
        x.write(file("x.safetensors"));
        // C = X^T X / tokens of the very F32 values the tool reads.
        io::SafetensorsReader xr(file("x.safetensors"));
        io::SafetensorsWriter c;
        for (const std::string& name : {q_proj, down_proj}) {
            const Mat<double> xs = cpu.upload(xr.read_matrix<double>(name));
            c.add(name, cpu.download(Mat<double>(xs.transpose() * xs / double(xs.rows()))));
        }
        c.write(file("c.safetensors"));
    }
};

const Inputs& inputs() {
    static const Inputs in;
    return in;
}

Mat<double> read(const io::SafetensorsReader& r, const std::string& name) {
    return cpu.upload(r.read_matrix<double>(name));
}

const char* all_methods[] = {"lora", "pissa", "pissa-fast", "milora", "corda-kpm", "corda-ipm", "lora-null"};
}  // namespace

TEST_CASE("loranull-init: every method, F32 and BF16 weights, two layers: W_res + s B A = W, metadata, dtypes") {
    const Inputs& in = inputs();
    for (io::Dtype dtype : {io::Dtype::F32, io::Dtype::BF16}) {
        const std::string dt(io::dtype_name(dtype));
        const fs::path w_file = file("w_" + dt + ".safetensors");
        const io::SafetensorsReader w_in(w_file);
        // What the tool saw: the weights rounded to the file's dtype.
        const Mat<double> w_q = read(w_in, q_proj + ".weight"), w_down = read(w_in, down_proj + ".weight");
        const double tolerance = dtype == io::Dtype::F32 ? 1e-5 : 2e-2;
        for (const char* method : all_methods) {
            INFO(method, " ", dt);
            const fs::path out = file(std::string("out_") + method + "_" + dt + ".safetensors");
            const Result r = run("--weights " + q(w_file) + " --activations " + q(file("x.safetensors")) +
                                 " --method " + method + " --rank 3 --alpha 6 --seed 5 --out " + q(out));
            INFO(r.err);
            REQUIRE(r.status == 0);
            CHECK(r.out.find(q_proj + ": [8, 12]") != std::string::npos);
            CHECK(r.err.find("ignored 2 tensor(s)") != std::string::npos);  // model.norm.weight, model.step
            CHECK_FALSE(fs::exists(out.string() + ".tmp"));

            const io::SafetensorsReader o(out);
            CHECK(o.tensors().size() == 6);
            CHECK(o.metadata().at("format") == "loranull.init/1");
            CHECK(o.metadata().at("method") == method);
            CHECK(o.metadata().at("rank") == "3");
            CHECK(o.metadata().at("alpha") == "6");
            CHECK(o.metadata().at("scale") == "2");
            for (const auto& [name, info] : o.tensors()) CHECK(info.dtype == dtype);
            const double s = 2.0;
            for (const auto& [layer, w] : {std::pair{q_proj, w_q}, std::pair{down_proj, w_down}}) {
                INFO(layer);
                const Mat<double> a = read(o, layer + ".lora_A.weight"), b = read(o, layer + ".lora_B.weight"),
                                  w_res = read(o, layer + ".weight");
                CHECK(a.rows() == rank);
                CHECK(a.cols() == w.cols());
                CHECK(b.rows() == w.rows());
                CHECK(b.cols() == rank);
                CHECK(w_res.rows() == w.rows());
                CHECK(w_res.cols() == w.cols());
                CHECK(test::relative_error(Mat<double>(w_res + s * b * a), w) < tolerance);
                if (std::string(method) == "lora") {
                    CHECK(b.norm() == 0);
                    CHECK(w_res == w);  // untouched, bit for bit
                    CHECK(a.cwiseAbs().maxCoeff() <= 1.0 / std::sqrt(double(w.cols())) * (1 + 1e-2));
                    CHECK(a.norm() > 0);
                } else {
                    CHECK(b.norm() > 0);
                }
                if (std::string(method) == "lora-null") {
                    // Rows of A orthogonal to the directions the activations use.
                    const Mat<double>& v = layer == q_proj ? in.x_q.v : in.x_down.v;
                    CHECK((a * v).norm() / a.norm() < (dtype == io::Dtype::F32 ? 1e-5 : 2e-2));
                    CHECK(r.out.find("null-space energy fraction") != std::string::npos);
                }
            }
        }
    }
}

TEST_CASE("loranull-init: --covariance C gives what --activations X gives, the same seed the same bits") {
    inputs();
    const fs::path w = file("w_F32.safetensors");
    for (const char* method : {"lora-null", "corda-kpm", "corda-ipm"}) {
        INFO(method);
        const Result from_x = run("--weights " + q(w) + " --activations " + q(file("x.safetensors")) + " --method " +
                                  method + " --rank 3 --out " + q(file("from_x.safetensors")));
        const Result from_c = run("--weights " + q(w) + " --covariance " + q(file("c.safetensors")) + " --method " +
                                  method + " --rank 3 --out " + q(file("from_c.safetensors")));
        REQUIRE(from_x.status == 0);
        REQUIRE(from_c.status == 0);
        const io::SafetensorsReader ox(file("from_x.safetensors")), oc(file("from_c.safetensors"));
        CHECK(ox.metadata().at("data") == "activations");
        CHECK(ox.metadata().at("normalisation") == "plain");
        CHECK(oc.metadata().at("data") == "covariance");
        CHECK(oc.metadata().at("alpha") == "3");  // default alpha = rank
        CHECK(oc.metadata().at("scale") == "1");
        for (const std::string& layer : {q_proj, down_proj}) {
            // B A is unique (factor signs are not): compare the products.
            const Mat<double> px = read(ox, layer + ".lora_B.weight") * read(ox, layer + ".lora_A.weight");
            const Mat<double> pc = read(oc, layer + ".lora_B.weight") * read(oc, layer + ".lora_A.weight");
            CHECK(test::relative_error(px, pc) < 1e-4);
        }
    }
    // Seeded methods: same seed, same file; another seed, other factors.
    for (const char* method : {"lora", "pissa-fast"}) {
        INFO(method);
        for (const char* name : {"s7a", "s7b"})
            REQUIRE(run("--weights " + q(w) + " --method " + method + " --rank 3 --seed 7 --out " +
                        q(file(std::string(name) + ".safetensors")))
                        .status == 0);
        REQUIRE(run("--weights " + q(w) + " --method " + method + " --rank 3 --seed=8 --out=" + q(file("s8.safetensors")))
                    .status == 0);
        CHECK(slurp(file("s7a.safetensors")) == slurp(file("s7b.safetensors")));
        if (std::string(method) == "lora") CHECK(slurp(file("s7a.safetensors")) != slurp(file("s8.safetensors")));
    }
}

TEST_CASE("loranull-init: a 1-D NAME.weight (a norm's weight) is not a layer, --alpha as a float") {
    // One 2 x 3 layer "l.weight" (F32) and a 1-D "norm.weight" of 3 floats.
    std::string data;
    for (float v : {1.0f, 2.0f, 0.5f, -1.0f, 0.25f, 3.0f, 1.0f, 1.0f, 1.0f}) data.append(reinterpret_cast<const char*>(&v), 4);
    write_raw(file("w_norm.safetensors"),
              R"({"l.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
              R"("norm.weight":{"dtype":"F32","shape":[3],"data_offsets":[24,36]}})",
              data);
    const Result r = run("--weights " + q(file("w_norm.safetensors")) + " --method pissa --rank 1 --alpha 0.5 --out " +
                         q(file("norm_out.safetensors")));
    INFO(r.err);
    REQUIRE(r.status == 0);
    CHECK(r.err.find("ignored 1 tensor(s)") != std::string::npos);
    CHECK(r.err.find("'norm.weight'") != std::string::npos);
    const io::SafetensorsReader o(file("norm_out.safetensors"));
    CHECK(o.tensors().size() == 3);
    CHECK(o.metadata().at("alpha") == "0.5");
    CHECK(o.metadata().at("scale") == "0.5");
    const Mat<double> w = read(io::SafetensorsReader(file("w_norm.safetensors")), "l.weight");
    CHECK(test::relative_error(Mat<double>(read(o, "l.weight") + 0.5 * read(o, "l.lora_B.weight") * read(o, "l.lora_A.weight")), w) < 1e-6);
}

TEST_CASE("loranull-init: --help documents every option") {
    const Result r = run("--help");
    CHECK(r.status == 0);
    for (const char* option : {"--weights", "--activations", "--covariance", "--method", "--rank", "--alpha", "--seed",
                               "--out", "--help"})
        CHECK(r.out.find(option) != std::string::npos);
    for (const char* method : all_methods) CHECK(r.out.find(method) != std::string::npos);
    CHECK(r.out.find("loranull.init/1") != std::string::npos);
}

TEST_CASE("loranull-init: every error is one line on stderr, a non-zero exit, and no output file") {
    inputs();
    const std::string w = q(file("w_F32.safetensors")), x = q(file("x.safetensors")), c = q(file("c.safetensors"));
    const fs::path out = file("must_not_exist.safetensors");
    const std::string o = " --out " + q(out);

    // Bad files, written once.
    {
        io::SafetensorsWriter nan_w, inf_x, no_layer, wrong_x, wrong_c, missing_x, int_w;
        Mat<double> bad = inputs().w_q;
        bad(1, 2) = std::numeric_limits<double>::quiet_NaN();
        nan_w.add(q_proj + ".weight", cpu.download(bad), io::Dtype::F32);
        nan_w.write(file("w_nan.safetensors"));
        Mat<double> bad_x = inputs().x_q.x;
        bad_x(0, 0) = std::numeric_limits<double>::infinity();
        inf_x.add(q_proj, cpu.download(bad_x), io::Dtype::F32);
        inf_x.add(down_proj, cpu.download(inputs().x_down.x), io::Dtype::F32);
        inf_x.write(file("x_inf.safetensors"));
        no_layer.add("bias", cpu.download(Mat<double>(Mat<double>::Ones(4, 4))), io::Dtype::F32);
        no_layer.add_integers("model.step", {7}, {1});
        no_layer.write(file("w_no_layer.safetensors"));
        wrong_x.add(q_proj, cpu.download(Mat<double>(test::gaussian<double>(40, 11, 1))), io::Dtype::F32);
        wrong_x.add(down_proj, cpu.download(inputs().x_down.x), io::Dtype::F32);
        wrong_x.write(file("x_wrong.safetensors"));
        wrong_c.add(q_proj, cpu.download(Mat<double>(Mat<double>::Identity(11, 11))), io::Dtype::F32);
        wrong_c.add(down_proj, cpu.download(Mat<double>(Mat<double>::Identity(20, 20))), io::Dtype::F32);
        wrong_c.write(file("c_wrong.safetensors"));
        missing_x.add(q_proj, cpu.download(inputs().x_q.x), io::Dtype::F32);
        missing_x.write(file("x_missing.safetensors"));
        int_w.add_integers(q_proj + ".weight", std::vector<std::int64_t>(8 * 12, 1), {8, 12}, io::Dtype::I32);
        int_w.write(file("w_int.safetensors"));
        const std::string good = slurp(file("w_F32.safetensors"));
        std::ofstream(file("w_truncated.safetensors"), std::ios::binary) << good.substr(0, good.size() - 10);
        std::ofstream(file("w_garbage.safetensors"), std::ios::binary) << std::string("\x10\0\0\0\0\0\0\0{not json}!!!!!!", 24);
        Mat<double> asym = Mat<double>::Identity(12, 12);
        asym(0, 1) = 0.5;
        io::SafetensorsWriter asym_c;
        asym_c.add(q_proj, cpu.download(asym), io::Dtype::F64);
        asym_c.add(down_proj, cpu.download(Mat<double>(Mat<double>::Identity(20, 20))), io::Dtype::F64);
        asym_c.write(file("c_asym.safetensors"));
    }

    struct Case {
        const char* what;
        std::string args;
        int status;
        const char* message;
    };
    const std::vector<Case> cases{
        {"unknown method", "--weights " + w + " --method lora-nul --rank 3" + o, 2, "unknown method 'lora-nul'"},
        {"missing --weights", "--method lora --rank 3" + o, 2, "missing --weights"},
        {"missing --method", "--weights " + w + " --rank 3" + o, 2, "missing --method"},
        {"missing --rank", "--weights " + w + " --method lora" + o, 2, "missing --rank"},
        {"missing --out", "--weights " + w + " --method lora --rank 3", 2, "missing --out"},
        {"missing value", "--weights " + w + " --method lora" + o + " --rank", 2, "--rank needs a value"},
        {"unknown option", "--weights " + w + " --method lora --rank 3 --rnak 4" + o, 2, "unknown option '--rnak'"},
        {"stray argument", "--weights " + w + " --method lora --rank 3 extra" + o, 2, "unexpected argument 'extra'"},
        {"option twice", "--weights " + w + " --method lora --rank 3 --rank 4" + o, 2, "--rank given twice"},
        {"rank not a number", "--weights " + w + " --method lora --rank three" + o, 2, "--rank expects an integer"},
        {"rank zero", "--weights " + w + " --method lora --rank 0" + o, 2, "--rank must be at least 1"},
        {"alpha zero", "--weights " + w + " --method lora --rank 3 --alpha 0" + o, 2, "--alpha must be a positive"},
        {"alpha negative", "--weights " + w + " --method lora --rank 3 --alpha -2" + o, 2, "--alpha must be a positive"},
        {"alpha nan", "--weights " + w + " --method lora --rank 3 --alpha nan" + o, 2, "--alpha must be a positive"},
        {"seed negative", "--weights " + w + " --method lora --rank 3 --seed -1" + o, 2, "--seed expects an integer"},
        {"both data files", "--weights " + w + " --activations " + x + " --covariance " + c + " --method lora-null --rank 3" + o,
         2, "not both"},
        {"data method without data", "--weights " + w + " --method corda-kpm --rank 3" + o, 2,
         "needs calibration data"},
        {"out is an input", "--weights " + w + " --method lora --rank 3 --out " + w, 2, "is also an input file"},
        {"rank > min(m, n)", "--weights " + w + " --method pissa --rank 9" + o, 1,
         "--rank 9 exceeds min(m, n) = 8 of layer 'model.layers.0.self_attn.q_proj.weight' [8, 12]"},
        {"X of the wrong width", "--weights " + w + " --activations " + q(file("x_wrong.safetensors")) +
                                     " --method lora-null --rank 3" + o,
         1, "are [40, 11], but W 'model.layers.0.self_attn.q_proj.weight' is [8, 12]"},
        {"C of the wrong size", "--weights " + w + " --covariance " + q(file("c_wrong.safetensors")) +
                                    " --method corda-ipm --rank 3" + o,
         1, "is [11, 11], but W"},
        {"C not symmetric", "--weights " + w + " --covariance " + q(file("c_asym.safetensors")) +
                                " --method lora-null --rank 3" + o,
         1, "is not symmetric"},
        {"layer missing in X", "--weights " + w + " --activations " + q(file("x_missing.safetensors")) +
                                   " --method lora-null --rank 3" + o,
         1, "has no tensor 'model.layers.0.mlp.down_proj'"},
        {"NaN in W", "--weights " + q(file("w_nan.safetensors")) + " --method pissa --rank 3" + o, 1,
         "holds NaN or Inf"},
        {"Inf in X", "--weights " + w + " --activations " + q(file("x_inf.safetensors")) + " --method lora-null --rank 3" + o,
         1, "'model.layers.0.self_attn.q_proj' holds NaN or Inf"},
        {"no layer in W", "--weights " + q(file("w_no_layer.safetensors")) + " --method lora --rank 1" + o, 1,
         "holds no layer"},
        {"integer weights", "--weights " + q(file("w_int.safetensors")) + " --method lora --rank 1" + o, 1,
         "has dtype I32"},
        {"unreadable W", "--weights " + q(file("does_not_exist.safetensors")) + " --method lora --rank 1" + o, 1,
         "cannot open the file"},
        {"truncated W", "--weights " + q(file("w_truncated.safetensors")) + " --method lora --rank 1" + o, 1,
         "fall outside"},
        {"corrupt W", "--weights " + q(file("w_garbage.safetensors")) + " --method lora --rank 1" + o, 1,
         "not valid JSON"},
        {"corrupt X", "--weights " + w + " --activations " + q(file("w_garbage.safetensors")) +
                          " --method lora-null --rank 1" + o,
         1, "not valid JSON"},
    };
    for (const Case& k : cases) {
        INFO(k.what);
        const Result r = run(k.args);
        INFO("stderr: ", r.err);
        CHECK(r.status == k.status);
        CHECK(r.err.find(k.message) != std::string::npos);
        CHECK(r.err.rfind("loranull-init: error: ", 0) == 0);
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);  // one line
        CHECK_FALSE(fs::exists(out));
        CHECK_FALSE(fs::exists(out.string() + ".tmp"));
    }
}
