// loranull-init: the initialisations of loranull from the command line, so that
// a Python user (or a test in another language) can use the library without
// writing C++. Files in, files out, safetensors both ways:
//
//   loranull-init --weights W.safetensors (--activations X.safetensors | --covariance C.safetensors)
//                 --method M --rank R [--alpha A] [--seed S] --out OUT.safetensors
//
// The contract (docs/loranull-init.md) is fixed; `loranull-init --help` prints
// it. Everything is computed in double and cast to the input weights' dtype
// last. Every error is one line on stderr and a non-zero exit (2: the command
// line, 1: the files or the computation); OUT is written completely or not at
// all (SafetensorsWriter writes OUT.tmp and renames it), and only after every
// layer has been checked and computed.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <loranull/loranull.hpp>

#include "tool_support.hpp"

using namespace loranull;
using namespace loranull::tools;
namespace fs = std::filesystem;
using Mat = CpuBackend::Matrix<double>;

namespace {

constexpr const char* format_tag = "loranull.init/1";

constexpr const char* help_text = R"(loranull-init: LoRA initialisations (LoRA-Null, PiSSA, MiLoRA, CorDA, LoRA) of the
layers in a safetensors file, written as a safetensors file.

usage:
  loranull-init --weights W.safetensors (--activations X.safetensors | --covariance C.safetensors)
                --method M --rank R [--alpha A] [--seed S] --out OUT.safetensors
  loranull-init --help

options (each takes one value, as "--name value" or "--name=value"):
  --weights W.safetensors
      The layers. Every 2-D tensor named NAME.weight, of shape [m, n] (PyTorch
      layout: out x in), is a layer NAME; F32, F64, F16 or BF16. Other tensors
      (biases, 1-D norm weights, anything not ending in ".weight") are ignored
      and counted in a note on stderr. At least one layer must exist.
  --activations X.safetensors
      Calibration inputs: for every layer NAME a tensor NAME of shape [tokens, n]
      (one row per token's input to that layer). The covariance is
      C = X^T X / tokens (plain normalisation), accumulated in double.
  --covariance C.safetensors
      Instead of activations: for every layer NAME a tensor NAME of shape [n, n]
      (symmetric; the mean of x x^T over the calibration tokens).
      Methods that need data (corda-kpm, corda-ipm, lora-null) need exactly one
      of --activations / --covariance, holding every layer; the other methods
      ignore them (with a note on stderr).
  --method M
      lora        A Kaiming-uniform U(-1/sqrt(n), 1/sqrt(n)) from --seed, B = 0,
                  residual = W (PEFT's default initialisation)
      pissa       the top-R singular triplets of W (exact thin SVD)
      pissa-fast  the same from a randomized SVD (4 power iterations, 10
                  oversamples, Gaussian test matrix from --seed)
      milora      the bottom-R singular triplets of W
      corda-kpm   CorDA knowledge-preserved: the last R triplets of W C (C from
                  knowledge data, damped until invertible)
      corda-ipm   CorDA instruction-previewed: the first R triplets (C from task data)
      lora-null   LoRA-Null: W P with P the projector on the R least-used input
                  directions (C's R smallest eigenvectors). v1 and v2 share this
                  initialisation; v2 freezes lora_A during training.
  --rank R
      The LoRA rank, 1 <= R <= min(m, n) for every layer.
  --alpha A
      LoRA alpha, A > 0; the scale is s = A / R. Default A = R (s = 1).
  --seed S
      Seed of the random initialisations (lora, pissa-fast); default 0. The same
      seed gives the same bits.
  --out OUT.safetensors
      The result; for every layer NAME:
        NAME.lora_A.weight  [R, n]   down-projection A
        NAME.lora_B.weight  [m, R]   up-projection B
        NAME.weight         [m, n]   residual W_res, the frozen base weight from now on
      in the dtype of NAME.weight in W, such that W = W_res + s B A (up to that
      dtype's rounding). __metadata__ records format "loranull.init/1", method,
      rank, alpha, scale, seed, data and normalisation. OUT must differ from the
      inputs; it is written to OUT.tmp and renamed when complete.
  --help, -h
      This text.

Progress goes to stdout, one line per layer. Notes (ignored tensors or data)
and warnings (a rank-deficient covariance: more than R zero eigenvalues, so the
null space is not unique) go to stderr after a successful run. An error is the
only line on stderr, "loranull-init: error: ...", with exit status 2 (bad
command line) or 1 (bad files, shapes, NaN/Inf, failed computation); OUT is
not written then.

example (PyTorch layout in, PEFT-style names out):
  loranull-init --weights w.safetensors --activations x.safetensors \
                --method lora-null --rank 16 --out init.safetensors
)";

struct Options {
    std::string weights, activations, covariance, method, out;
    Index rank = 0;
    double alpha = 0;  // 0: not given (alpha = rank)
    std::uint64_t seed = 0;
};

/// Parses argv; prints --help and exits 0 when asked.
Options parse(int argc, char** argv) {
    Options o;
    std::map<std::string, std::string> given;
    const std::vector<std::string> known{"--weights", "--activations", "--covariance", "--method",
                                         "--rank",    "--alpha",       "--seed",       "--out"};
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            std::fputs(help_text, stdout);
            std::exit(0);
        }
        std::string value;
        bool has_value = false;
        if (const auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
            value = arg.substr(eq + 1);
            arg = arg.substr(0, eq);
            has_value = true;
        }
        if (std::find(known.begin(), known.end(), arg) == known.end())
            throw UsageError(arg.rfind("-", 0) == 0 ? "unknown option '" + arg + "'"
                                                    : "unexpected argument '" + arg + "'");
        if (!has_value) {
            if (i + 1 >= argc) throw UsageError(arg + " needs a value");
            value = argv[++i];
        }
        if (given.count(arg)) throw UsageError(arg + " given twice");
        if (value.empty()) throw UsageError(arg + " has an empty value");
        given[arg] = value;
    }
    auto required = [&](const std::string& name) {
        auto it = given.find(name);
        if (it == given.end()) throw UsageError("missing " + name + " (see --help)");
        return it->second;
    };
    o.weights = required("--weights");
    o.method = required("--method");
    o.out = required("--out");
    o.rank = parse_integer<Index>("--rank", required("--rank"));
    if (o.rank < 1) throw UsageError("--rank must be at least 1, got " + std::to_string(o.rank));
    if (given.count("--alpha")) {
        o.alpha = parse_number("--alpha", given["--alpha"]);
        if (!std::isfinite(o.alpha) || o.alpha <= 0)
            throw UsageError("--alpha must be a positive number, got '" + given["--alpha"] + "'");
    }
    if (given.count("--seed")) o.seed = parse_integer<std::uint64_t>("--seed", given["--seed"]);
    if (given.count("--activations")) o.activations = given["--activations"];
    if (given.count("--covariance")) o.covariance = given["--covariance"];
    if (!o.activations.empty() && !o.covariance.empty())
        throw UsageError("give --activations or --covariance, not both");
    return o;
}

/// Whether two paths name the same file (the second need not exist).
bool same_file(const fs::path& a, const fs::path& b) {
    std::error_code ec;
    return fs::exists(b, ec) && fs::equivalent(a, b, ec);
}

struct Layer {
    std::string name;      // NAME (the tensor is NAME.weight)
    Index m = 0, n = 0;    // W is m x n
    io::Dtype dtype = io::Dtype::F32;
};

/// The data of a layer's tensor in X or C, checked for presence and shape.
void check_data_tensor(const io::SafetensorsReader& data, const std::string& flag, const Layer& layer, bool square) {
    const std::string file = data.path().string();
    if (!data.contains(layer.name))
        tool_fail(flag, " ", file, " has no tensor '", layer.name, "' for layer '", layer.name,
             "' (every layer needs one)");
    const io::TensorInfo& t = data.info(layer.name);
    if (!io::is_floating(t.dtype))
        tool_fail(flag, " ", file, ": tensor '", layer.name, "' has dtype ", io::dtype_name(t.dtype),
             ", expected F32, F64, F16 or BF16");
    if (t.shape.size() != 2)
        tool_fail(flag, " ", file, ": tensor '", layer.name, "' has ", t.shape.size(),
             " dimensions, expected 2 (", square ? "[n, n]" : "[tokens, n]", ")");
    if (square && (t.shape[0] != layer.n || t.shape[1] != layer.n))
        tool_fail(flag, " ", file, ": covariance '", layer.name, "' is [", t.shape[0], ", ", t.shape[1],
             "], but W '", layer.name, ".weight' is [", layer.m, ", ", layer.n, "]: expected [", layer.n, ", ",
             layer.n, "]");
    if (!square && t.shape[1] != layer.n)
        tool_fail(flag, " ", file, ": activations '", layer.name, "' are [", t.shape[0], ", ",
             t.shape[1], "], but W '", layer.name, ".weight' is [", layer.m, ", ", layer.n, "]: expected [tokens, ",
             layer.n, "] (n = ", layer.n, " columns)");
    if (!square && t.shape[0] < 1)
        tool_fail(flag, " ", file, ": activations '", layer.name, "' hold no tokens");
}

Mat read_finite(CpuBackend& cpu, const io::SafetensorsReader& reader, const std::string& name, const std::string& what) {
    const HostMatrix<double> host = reader.read_matrix<double>(name);
    if (!all_finite(host.data(), host.size()))
        tool_fail(what, " ", reader.path().string(), ": tensor '", name, "' holds NaN or Inf");
    return cpu.upload(host);
}

int run(const Options& o) {
    const MethodInfo& method = find_method(o.method);
    const bool has_activations = !o.activations.empty(), has_covariance = !o.covariance.empty();
    if (method.needs_data && !has_activations && !has_covariance)
        throw UsageError("method " + o.method + " needs calibration data: give --activations or --covariance");
    for (const std::string& input : {o.weights, o.activations, o.covariance})
        if (!input.empty() && same_file(input, o.out))
            throw UsageError("--out " + o.out + " is also an input file; write to another file");
    // Notes and warnings are printed once everything succeeded, so that an
    // error is the only line on stderr.
    std::vector<std::string> notes;
    if (!method.needs_data && (has_activations || has_covariance))
        notes.push_back("note: method " + o.method + " uses no data; " +
                        (has_activations ? "--activations" : "--covariance") + " is ignored");

    CpuBackend cpu;
    const io::SafetensorsReader weights(o.weights);
    std::optional<io::SafetensorsReader> data;
    if (method.needs_data) data.emplace(has_activations ? o.activations : o.covariance);
    const std::string data_flag = has_activations ? "--activations" : "--covariance";

    // Find and check every layer before computing anything.
    std::vector<Layer> layers;
    std::vector<std::string> ignored;
    const std::string suffix = ".weight";
    for (const auto& [name, info] : weights.tensors()) {
        const bool is_weight = name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
        if (!is_weight || info.shape.size() != 2) {
            ignored.push_back(name);
            continue;
        }
        Layer layer{name.substr(0, name.size() - suffix.size()), info.shape[0], info.shape[1], info.dtype};
        if (!io::is_floating(info.dtype))
            tool_fail("--weights ", o.weights, ": layer '", name, "' has dtype ",
                 io::dtype_name(info.dtype), ", expected F32, F64, F16 or BF16");
        if (layer.m < 1 || layer.n < 1)
            tool_fail("--weights ", o.weights, ": layer '", name, "' is empty ([", layer.m, ", ", layer.n,
                 "])");
        if (o.rank > std::min(layer.m, layer.n))
            tool_fail("--rank ", o.rank, " exceeds min(m, n) = ", std::min(layer.m, layer.n), " of layer '",
                 name, "' [", layer.m, ", ", layer.n, "]");
        if (data) check_data_tensor(*data, data_flag, layer, has_covariance);
        layers.push_back(layer);
    }
    if (layers.empty())
        tool_fail("--weights ", o.weights, " holds no layer: no 2-D tensor named NAME.weight (",
             weights.tensors().size(), " tensors in the file)");
    if (!ignored.empty())
        notes.push_back("note: ignored " + std::to_string(ignored.size()) + " tensor(s) of " + o.weights +
                        " that are not 2-D NAME.weight (first: '" + ignored.front() + "')");

    const double alpha = o.alpha > 0 ? o.alpha : double(o.rank);
    const LoraConfig config{o.rank, alpha, o.seed};
    const double scale = config.scale();
    io::SafetensorsWriter out;
    for (const Layer& layer : layers) {
        const Mat w = read_finite(cpu, weights, layer.name + ".weight", "--weights");
        std::string note;
        LoraFactors<CpuBackend, double> f;
        if (!method.needs_data) {
            switch (method.method) {
                case Method::lora: f = lora(cpu, w, config); break;
                case Method::pissa: f = pissa(cpu, w, config); break;
                case Method::pissa_fast: f = pissa_fast(cpu, w, config); break;
                case Method::milora: f = milora(cpu, w, config); break;
                default: break;
            }
        } else {
            // C as a plain n x n matrix: from the activations (plain
            // normalisation, X^T X / tokens) or given.
            std::optional<Covariance<CpuBackend, double>> accumulated;
            Mat c;
            if (has_activations) {
                const Mat x = read_finite(cpu, *data, layer.name, "--activations");  // tokens x n
                accumulated.emplace(cpu, layer.n, Normalisation::plain, o.activations + ":" + layer.name);
                accumulated->add(cpu.transpose(x));                                // n x tokens
            } else {
                c = read_finite(cpu, *data, layer.name, "--covariance");
                const double asymmetry = (c - c.transpose()).norm(), size = c.norm();
                if (asymmetry > 1e-5 * size)
                    tool_fail("--covariance ", o.covariance, ": '", layer.name,
                         "' is not symmetric (||C - C^T|| / ||C|| = ", asymmetry / size, ")");
                c = (0.5 * (c + c.transpose())).eval();
            }
            switch (method.method) {
                case Method::lora_null: {
                    const NullSpace<CpuBackend, double> basis =
                        accumulated ? null_space(*accumulated, o.rank) : null_space(cpu, c, o.rank);
                    if (basis.rank_report.deficient)
                        notes.push_back("warning: layer '" + layer.name + "': " + basis.rank_report.message());
                    char fraction[32];
                    std::snprintf(fraction, sizeof fraction, "%.2e", basis.energy_fraction());
                    note = std::string(", null-space energy fraction ") + fraction;
                    f = lora_null(cpu, w, basis, config);
                    break;
                }
                case Method::corda_kpm:
                    f = accumulated ? corda_kpm(cpu, w, *accumulated, config) : corda_kpm(cpu, w, c, config);
                    break;
                case Method::corda_ipm:
                    f = accumulated ? corda_ipm(cpu, w, *accumulated, config) : corda_ipm(cpu, w, c, config);
                    break;
                default: break;
            }
        }
        if (!cpu.all_finite(f.A) || !cpu.all_finite(f.B) || !cpu.all_finite(f.W_res))
            tool_fail("layer '", layer.name, "': the ", o.method, " initialisation produced NaN or Inf");
        Mat check = w - f.W_res;
        check.noalias() -= scale * f.B * f.A;
        const double reconstruction = check.norm() / std::max(w.norm(), 1e-300);

        out.add(layer.name + ".lora_A.weight", cpu.download(f.A), layer.dtype);
        out.add(layer.name + ".lora_B.weight", cpu.download(f.B), layer.dtype);
        out.add(layer.name + ".weight", cpu.download(f.W_res), layer.dtype);
        std::printf("%s: [%td, %td] %s, rank %td, scale %s, ||W - W_res - s B A|| / ||W|| = %.1e (double)%s\n",
                    layer.name.c_str(), layer.m, layer.n, std::string(io::dtype_name(layer.dtype)).c_str(), o.rank,
                    number_text(scale).c_str(), reconstruction, note.c_str());
    }
    out.set_metadata("format", format_tag);
    out.set_metadata("method", o.method);
    out.set_metadata("rank", std::to_string(o.rank));
    out.set_metadata("alpha", number_text(alpha));
    out.set_metadata("scale", number_text(scale));
    out.set_metadata("seed", std::to_string(o.seed));
    out.set_metadata("data", !method.needs_data ? "none" : has_activations ? "activations" : "covariance");
    if (method.needs_data && has_activations) out.set_metadata("normalisation", "plain");
    out.write(o.out);
    for (const std::string& note : notes) std::fprintf(stderr, "loranull-init: %s\n", note.c_str());
    std::printf("wrote %zu layer(s) to %s\n", layers.size(), o.out.c_str());
    return 0;
}

/// One line: newlines in a message (none expected) become spaces.
void print_error(const std::string& message) {
    std::string line = message;
    std::replace(line.begin(), line.end(), '\n', ' ');
    std::fprintf(stderr, "loranull-init: error: %s\n", line.c_str());
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(parse(argc, argv));
    } catch (const UsageError& e) {
        print_error(e.what());
        return 2;
    } catch (const loranull::error& e) {
        print_error(e.what());
        return 1;
    } catch (const std::exception& e) {
        print_error(e.what());
        return 1;
    }
}
