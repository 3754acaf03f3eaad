// loranull-build: LoRA-Null (and the other initialisations) for a whole Hugging
// Face LLaMA checkpoint, streamed block by block (docs/loranull-build.md):
//
//   loranull-build --model DIR --calib TOKENS.safetensors --method lora-null --rank 128 --out DIR
//
// The calibration tokens go through the model one block at a time: their hidden
// states (dim x tokens, float) stay in memory between blocks, block i's weights
// are read from the checkpoint, its four distinct input covariances (SPEC.md
// section 1) are accumulated in double during its forward pass, the seven
// projections are decomposed, the block's residual weights and adapters are
// written to out/blocks/block-NNNNN.safetensors (a temporary name, renamed when
// complete), and everything of block i is freed before block i + 1. Hidden
// states are computed with the ORIGINAL weights (at initialisation the adapted
// block computes the same function, up to rounding).
//
// When every block is written, the outputs are assembled from the block files
// one tensor at a time (never the whole model in memory): the residual model as
// an HF checkpoint with the input's sharding and the PEFT adapter
// (--export residual, the default), or only a plain rank-2r PEFT adapter for the
// unmodified base (--export plain). A rerun with the same settings and --out
// skips the blocks already written (resumable).
//
// Errors: one line "loranull-build: error: ..." on stderr, exit 2 (command
// line) or 1 (files, data, computation). Input problems are found before
// anything is written.
#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <loranull/io/hf_checkpoint.hpp>
#include <loranull/llama/model.hpp>
#include <loranull/loranull.hpp>

#include "tool_support.hpp"

using namespace loranull;
using namespace loranull::tools;
namespace fs = std::filesystem;
using json = nlohmann::json;
using MatF = CpuBackend::Matrix<float>;
using MatD = CpuBackend::Matrix<double>;
using Model = LlamaModel<CpuBackend, float>;

namespace {

constexpr const char* settings_format = "loranull.build/1";
constexpr const char* block_format = "loranull.build.block/1";

constexpr const char* help_text = R"(loranull-build: LoRA-Null (or CorDA, PiSSA, MiLoRA, LoRA) adapters for a Hugging Face
LLaMA checkpoint, computed block by block with bounded memory.

usage:
  loranull-build --model DIR --method M --rank R --out DIR [--calib TOKENS.safetensors]
                 [--alpha A] [--seed S] [--samples N] [--seq-len T] [--batch B]
                 [--layers LIST] [--normalisation plain|reference] [--dtype f32|bf16|f16]
                 [--export residual|plain] [--device cpu|cuda] [--allow-rank-deficient]
                 [--save-covariances] [--keep-blocks]
  loranull-build --help

options (each takes one value, as "--name value" or "--name=value", except the flags):
  --model DIR        HF LLaMA checkpoint: config.json and model.safetensors, or shards
                     listed in model.safetensors.index.json; F32, F16, BF16 or F64.
  --calib FILE       calibration token ids: a safetensors file with a tensor
                     "input_ids" of shape [samples, seq_len], I32 or I64. Needed by
                     lora-null, corda-kpm, corda-ipm; optional for the weight-only
                     methods (then it only feeds the knowledge report).
  --method M         lora-null, corda-kpm, corda-ipm, pissa, pissa-fast, milora, lora
  --rank R           LoRA rank (1 <= R <= min(out, in) of every projection)
  --alpha A          LoRA alpha (scale s = A / R); default A = R (s = 1)
  --seed S           seed of the random initialisations (lora, pissa-fast); default 0
  --samples N        use the first N calibration sequences (default: all)
  --seq-len T        use the first T tokens of each sequence (default: all)
  --batch B          sequences per forward chunk (default: 4096 tokens' worth)
  --layers LIST      blocks to adapt, e.g. "0-3,7" (default: all)
  --normalisation X  covariance normalisation: plain (mean of x x^T, default) or
                     reference (each sample scaled by 1/|max|, divided by 256)
  --dtype D          storage type of the outputs: f32, bf16 or f16 (default: each
                     tensor keeps the checkpoint's dtype). Computation is float
                     (forward) and double (covariances, decompositions), rounded last.
  --export E         residual (default): OUT/model (the residual model, same
                     sharding as the input) + OUT/adapter (PEFT adapter for it);
                     plain: only OUT/adapter, a rank-2R adapter for the unmodified
                     base (SPEC.md section 6; its product is zero at initialisation)
  --device D         cpu (default); cuda is refused (no CUDA forward pass yet)
  --allow-rank-deficient   continue when the calibration has fewer tokens than a
                     projection has inputs (covariance rank-deficient; warned)
  --save-covariances write each block's four covariances to OUT/covariances/
  --keep-blocks      keep OUT/blocks/ after the outputs are assembled
  --help, -h         this text

OUT must be empty or absent, or hold a run of this tool with the same settings:
then finished blocks are skipped (resume). Progress (with an ETA) goes to stderr;
the per-layer report (energy fraction of the adapter's input space and the SPEC.md
section 4 bound) to stdout and OUT/report.json. Errors: one line on stderr, exit 2
(command line) or 1 (files, data), nothing half-written.
)";

// ---------------------------------------------------------------------------
// Options (errors, the method table and number parsing: tool_support.hpp)

struct Options {
    std::string model, calib, method, out;
    Index rank = 0;
    double alpha = 0;  // 0: alpha = rank
    std::uint64_t seed = 0;
    Index samples = 0, seq_len = 0, batch = 0;  // 0: default
    std::string layers = "all";
    Normalisation normalisation = Normalisation::plain;
    std::optional<io::Dtype> dtype;  // unset: keep each tensor's dtype
    bool export_plain = false;
    bool allow_rank_deficient = false, save_covariances = false, keep_blocks = false;
    Index stop_after_blocks = -1;  // testing: exit 3 after writing this many blocks
};


Options parse(int argc, char** argv) {
    Options o;
    std::map<std::string, std::string> given;
    const std::vector<std::string> with_value{"--model",  "--calib",   "--method", "--rank",          "--out",
                                              "--alpha",  "--seed",    "--samples", "--seq-len",      "--batch",
                                              "--layers", "--normalisation", "--dtype", "--export",   "--device",
                                              "--stop-after-blocks"};
    const std::vector<std::string> flags{"--allow-rank-deficient", "--save-covariances", "--keep-blocks"};
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            std::fputs(help_text, stdout);
            std::exit(0);
        }
        if (std::find(flags.begin(), flags.end(), arg) != flags.end()) {
            if (given.count(arg)) throw UsageError(arg + " given twice");
            given[arg] = "1";
            continue;
        }
        std::string value;
        bool has_value = false;
        if (const auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
            value = arg.substr(eq + 1);
            arg = arg.substr(0, eq);
            has_value = true;
        }
        if (std::find(with_value.begin(), with_value.end(), arg) == with_value.end())
            throw UsageError(arg.rfind("-", 0) == 0 ? "unknown option '" + arg + "'" : "unexpected argument '" + arg + "'");
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
    if (given.count("--device") && given["--device"] != "cpu") {
        if (given["--device"] == "cuda")
            throw UsageError("--device cuda: this build has no CUDA forward pass yet (the LLaMA kernels run on the "
                             "CPU only); use --device cpu");
        throw UsageError("--device must be cpu or cuda, got '" + given["--device"] + "'");
    }
    o.model = required("--model");
    o.method = required("--method");
    o.out = required("--out");
    o.rank = parse_integer<Index>("--rank", required("--rank"));
    if (o.rank < 1) throw UsageError("--rank must be at least 1, got " + std::to_string(o.rank));
    const MethodInfo& method = find_method(o.method);
    if (given.count("--calib")) o.calib = given["--calib"];
    if (method.needs_data && o.calib.empty())
        throw UsageError("method " + o.method + " needs calibration data: give --calib TOKENS.safetensors");
    if (given.count("--alpha")) {
        o.alpha = parse_number("--alpha", given["--alpha"]);
        if (!std::isfinite(o.alpha) || o.alpha <= 0)
            throw UsageError("--alpha must be a positive number, got '" + given["--alpha"] + "'");
    }
    if (given.count("--seed")) o.seed = parse_integer<std::uint64_t>("--seed", given["--seed"]);
    for (auto [name, target] : {std::pair{"--samples", &o.samples}, {"--seq-len", &o.seq_len}, {"--batch", &o.batch}})
        if (given.count(name)) {
            *target = parse_integer<Index>(name, given[name]);
            if (*target < 1) throw UsageError(std::string(name) + " must be at least 1, got " + given[name]);
        }
    if ((given.count("--samples") || given.count("--seq-len")) && o.calib.empty())
        throw UsageError("--samples and --seq-len select calibration data: give --calib");
    if (given.count("--layers")) o.layers = given["--layers"];
    if (given.count("--normalisation")) {
        const std::string& n = given["--normalisation"];
        if (n != "plain" && n != "reference")
            throw UsageError("--normalisation must be plain or reference, got '" + n + "'");
        o.normalisation = parse_normalisation(n);
    }
    if (given.count("--dtype")) {
        const std::string& d = given["--dtype"];
        if (d == "f32") o.dtype = io::Dtype::F32;
        else if (d == "bf16") o.dtype = io::Dtype::BF16;
        else if (d == "f16") o.dtype = io::Dtype::F16;
        else throw UsageError("--dtype must be f32, bf16 or f16, got '" + d + "'");
    }
    if (given.count("--export")) {
        const std::string& e = given["--export"];
        if (e != "residual" && e != "plain") throw UsageError("--export must be residual or plain, got '" + e + "'");
        o.export_plain = e == "plain";
    }
    o.allow_rank_deficient = given.count("--allow-rank-deficient") != 0;
    o.save_covariances = given.count("--save-covariances") != 0;
    o.keep_blocks = given.count("--keep-blocks") != 0;
    if (given.count("--stop-after-blocks"))
        o.stop_after_blocks = parse_integer<Index>("--stop-after-blocks", given["--stop-after-blocks"]);
    return o;
}

/// "all" or a comma-separated list of N and N-M, each within [0, layers).
std::vector<Index> parse_layers(const std::string& text, Index layers) {
    if (text == "all") {
        std::vector<Index> all(static_cast<std::size_t>(layers));
        for (Index l = 0; l < layers; ++l) all[static_cast<std::size_t>(l)] = l;
        return all;
    }
    std::set<Index> out;
    std::stringstream in(text);
    std::string part;
    while (std::getline(in, part, ',')) {
        const auto dash = part.find('-');
        const Index first = parse_integer<Index>("--layers", dash == std::string::npos ? part : part.substr(0, dash));
        const Index last = dash == std::string::npos ? first : parse_integer<Index>("--layers", part.substr(dash + 1));
        if (first < 0 || last < first || last >= layers)
            throw UsageError("--layers: '" + part + "' is not a range within 0 .. " + std::to_string(layers - 1) +
                             " (the model has " + std::to_string(layers) + " layers)");
        for (Index l = first; l <= last; ++l) out.insert(l);
    }
    if (out.empty()) throw UsageError("--layers selects no layer");
    return {out.begin(), out.end()};
}

// ---------------------------------------------------------------------------
// Small utilities

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

std::string duration_text(double seconds) {
    char buffer[32];
    const long s = std::lround(std::max(0.0, seconds));
    if (s >= 3600) std::snprintf(buffer, sizeof buffer, "%ldh%02ldm", s / 3600, (s / 60) % 60);
    else if (s >= 60) std::snprintf(buffer, sizeof buffer, "%ldm%02lds", s / 60, s % 60);
    else std::snprintf(buffer, sizeof buffer, "%lds", s);
    return buffer;
}

/// Peak resident memory of this process (VmHWM of /proc/self/status), bytes; -1 if unknown.
long long peak_memory_bytes() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("VmHWM:", 0) == 0) {
            long long kib = -1;
            std::sscanf(line.c_str() + 6, "%lld", &kib);
            return kib < 0 ? -1 : kib * 1024;
        }
    return -1;
}

/// FNV-1a 64 of a file's bytes, as hex (identifies the calibration data).
std::string file_hash(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) tool_fail("cannot read ", path.string());
    std::uint64_t h = 1469598103934665603ull;
    std::vector<char> buffer(1 << 20);
    while (in) {
        in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
        for (std::streamsize i = 0; i < in.gcount(); ++i) {
            h ^= static_cast<unsigned char>(buffer[static_cast<std::size_t>(i)]);
            h *= 1099511628211ull;
        }
    }
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(h));
    return text;
}

std::string text_hash(const std::string& s) {
    std::uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) {
        h ^= c;
        h *= 1099511628211ull;
    }
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(h));
    return text;
}

void write_text_atomic(const fs::path& path, const std::string& text) {
    const fs::path tmp = path.string() + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out) tool_fail("cannot create ", tmp.string());
        out << text;
        out.flush();
        if (!out) tool_fail("writing ", tmp.string(), " failed");
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec) tool_fail("cannot rename ", tmp.string(), " to ", path.string(), ": ", ec.message());
}

/// Progress on stderr: a bar redrawn in place on a terminal, one line per
/// step otherwise (logs, tests).
class Progress {
public:
    Progress(Index total, Index already_done) : total_(total), done_(already_done), tty_(::isatty(2) != 0) {}

    void step(const std::string& what) {
        ++done_;
        ++this_run_;
        draw(what);
    }
    void show(const std::string& what) {
        if (tty_) draw(what);
    }
    /// Ends the bar's line (before other output on stderr).
    void finish() {
        if (tty_ && drawn_) std::fputc('\n', stderr);
        drawn_ = false;
    }
    bool tty() const { return tty_; }

private:
    void draw(const std::string& what) {
        const double elapsed = seconds_since(start_);
        const Index left = total_ - done_;
        std::string eta = this_run_ > 0 ? duration_text(elapsed / double(this_run_) * double(left)) : "?";
        const int width = 30;
        const int filled = total_ > 0 ? int(width * done_ / total_) : width;
        std::string bar(static_cast<std::size_t>(filled), '#');
        bar.append(static_cast<std::size_t>(width - filled), '.');
        std::fprintf(stderr, "%s[%s] %td/%td blocks  elapsed %s  eta %s  %s%s", tty_ ? "\r" : "", bar.c_str(), done_,
                     total_, duration_text(elapsed).c_str(), eta.c_str(), what.c_str(), tty_ ? "\033[K" : "\n");
        std::fflush(stderr);
        drawn_ = true;
    }

    Index total_, done_, this_run_ = 0;
    bool tty_, drawn_ = false;
    Clock::time_point start_ = Clock::now();
};

Progress* active_progress = nullptr;  // so that an error line starts on a fresh line

// ---------------------------------------------------------------------------
// Streaming safetensors output: the header is computed from the planned shapes,
// then each tensor's bytes are produced and written one at a time, so that
// assembling a whole model never holds more than one tensor.

struct OutTensor {
    std::string name;
    io::Dtype dtype;
    std::vector<std::int64_t> shape;
    std::function<void(std::ostream&)> write;  // writes exactly bytes() bytes

    std::uint64_t bytes() const {
        std::uint64_t count = 1;
        for (auto d : shape) count *= static_cast<std::uint64_t>(d);
        return count * io::dtype_size(dtype);
    }
};

void write_safetensors_streamed(const fs::path& path, const std::map<std::string, std::string>& metadata,
                                const std::vector<OutTensor>& tensors) {
    json header = json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    std::uint64_t offset = 0;
    for (const auto& t : tensors) {
        header[t.name] = {{"dtype", io::dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes()}}};
        offset += t.bytes();
    }
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    const fs::path tmp = path.string() + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out) tool_fail("cannot create ", tmp.string());
        unsigned char length[8];
        for (int i = 0; i < 8; ++i) length[i] = static_cast<unsigned char>(std::uint64_t(text.size()) >> (8 * i));
        out.write(reinterpret_cast<const char*>(length), 8);
        out.write(text.data(), static_cast<std::streamsize>(text.size()));
        for (const auto& t : tensors) {
            const auto before = out.tellp();
            t.write(out);
            if (!out || static_cast<std::uint64_t>(out.tellp() - before) != t.bytes())
                tool_fail("writing tensor '", t.name, "' to ", tmp.string(), " failed");
        }
        out.flush();
        if (!out) tool_fail("writing ", tmp.string(), " failed");
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec) tool_fail("cannot rename ", tmp.string(), " to ", path.string(), ": ", ec.message());
}

/// Copies tensor `info`'s bytes verbatim from safetensors file `path`.
void copy_tensor_bytes(const fs::path& path, const io::TensorInfo& info, std::ostream& out) {
    std::ifstream in(path, std::ios::binary);
    unsigned char length[8] = {};
    in.read(reinterpret_cast<char*>(length), 8);
    std::uint64_t header = 0;
    for (int i = 7; i >= 0; --i) header = (header << 8) | length[i];
    in.seekg(static_cast<std::streamoff>(8 + header + info.begin));
    std::vector<char> buffer(1 << 22);
    std::uint64_t left = info.end - info.begin;
    while (left > 0 && in) {
        const auto n = static_cast<std::streamsize>(std::min<std::uint64_t>(left, buffer.size()));
        in.read(buffer.data(), n);
        out.write(buffer.data(), in.gcount());
        left -= static_cast<std::uint64_t>(in.gcount());
    }
    if (left != 0) tool_fail("could not read tensor '", info.name, "' from ", path.string());
}

/// m (rows x cols, column-major) written row-major in dtype.
void encode(const HostMatrix<double>& m, io::Dtype dtype, std::ostream& out) {
    const std::size_t size = io::dtype_size(dtype);
    std::vector<unsigned char> row(static_cast<std::size_t>(m.cols()) * size);
    for (Index i = 0; i < m.rows(); ++i) {
        for (Index j = 0; j < m.cols(); ++j) {
            const double v = m(i, j);
            std::uint64_t bits = 0;
            switch (dtype) {
                case io::Dtype::F64: bits = std::bit_cast<std::uint64_t>(v); break;
                case io::Dtype::F32: bits = std::bit_cast<std::uint32_t>(static_cast<float>(v)); break;
                case io::Dtype::F16: bits = io::float_to_f16(static_cast<float>(v)); break;
                case io::Dtype::BF16: bits = io::float_to_bf16(static_cast<float>(v)); break;
                default: tool_fail("cannot store a matrix as ", io::dtype_name(dtype));
            }
            for (std::size_t b = 0; b < size; ++b)
                row[static_cast<std::size_t>(j) * size + b] = static_cast<unsigned char>(bits >> (8 * b));
        }
        out.write(reinterpret_cast<const char*>(row.data()), static_cast<std::streamsize>(row.size()));
    }
}

// ---------------------------------------------------------------------------
// The run

struct Timings {
    double load = 0, embed = 0, forward = 0, covariance = 0, decomposition = 0, write = 0, assembly = 0;
};

constexpr std::array<LinearInput, 4> all_inputs = {LinearInput::attn_in, LinearInput::o_in, LinearInput::mlp_in,
                                                   LinearInput::down_in};
const char* input_name(LinearInput i) {
    switch (i) {
        case LinearInput::attn_in: return "attn_in";
        case LinearInput::o_in: return "o_in";
        case LinearInput::mlp_in: return "mlp_in";
        case LinearInput::down_in: return "down_in";
    }
    return "?";
}

std::string layer_prefix(Index layer) { return "model.layers." + std::to_string(layer) + "."; }

std::string block_file_name(Index layer) {
    char name[64];
    std::snprintf(name, sizeof name, "block-%05td.safetensors", layer);
    return name;
}

/// adapter_config.json in io/peft.hpp's format (docs/peft.md).
json peft_config(Index r, double lora_alpha, const std::vector<std::string>& targets, const std::string& base) {
    json config = json::object();
    config["peft_type"] = "LORA";
    config["task_type"] = "CAUSAL_LM";
    config["base_model_name_or_path"] = base;
    config["revision"] = nullptr;
    config["inference_mode"] = true;
    config["r"] = r;
    if (std::nearbyint(lora_alpha) == lora_alpha && std::abs(lora_alpha) < 9.0e15)
        config["lora_alpha"] = static_cast<std::int64_t>(lora_alpha);
    else
        config["lora_alpha"] = lora_alpha;
    config["lora_dropout"] = 0.0;
    config["target_modules"] = targets;
    config["bias"] = "none";
    config["fan_in_fan_out"] = false;
    config["modules_to_save"] = nullptr;
    config["init_lora_weights"] = true;
    config["layers_to_transform"] = nullptr;
    config["layers_pattern"] = nullptr;
    config["rank_pattern"] = json::object();
    config["alpha_pattern"] = json::object();
    return config;
}

class Builder {
public:
    explicit Builder(Options o) : o_(std::move(o)), method_(find_method(o_.method)) {}

    int run() {
        const auto start = Clock::now();
        const fs::path out = o_.out;
        for (const std::string& input : {o_.model, o_.calib}) {
            std::error_code ec;
            if (input.empty() || !fs::exists(input) || !fs::exists(out)) continue;
            const fs::path a = fs::weakly_canonical(input, ec), b = fs::weakly_canonical(out, ec);
            if (a == b) throw UsageError("--out " + o_.out + " is also an input; write to another folder");
        }

        // 1. Every input checked before anything is written.
        HfCheckpointReader checkpoint(o_.model, "--model " + o_.model);
        checkpoint.check_all();
        config_ = checkpoint.config();
        layers_ = parse_layers(o_.layers, config_.n_layers);
        for (ProjectionKind kind : all_projections) {
            const auto shape = checkpoint.projection_shape(kind);
            if (o_.rank > std::min(shape[0], shape[1]))
                tool_fail("--rank ", o_.rank, " exceeds min(out, in) = ", std::min(shape[0], shape[1]), " of ",
                          projection_path(kind), " [", shape[0], ", ", shape[1], "]");
        }
        if (!o_.calib.empty()) read_calibration();
        check_rank_deficiency();
        const json settings = settings_json(checkpoint);

        // 2. The output folder: new, or a resumable run of the same settings.
        const bool complete = prepare_output(settings);
        if (complete) {
            std::printf("%s is a finished run with these settings: nothing to do\n", o_.out.c_str());
            return 0;
        }
        settings_hash_ = text_hash(settings.dump());

        // 3. The blocks still to compute.
        std::vector<Index> pending;
        for (Index l : layers_)
            if (!block_done(l)) pending.push_back(l);
        Progress progress(static_cast<Index>(layers_.size()), static_cast<Index>(layers_.size() - pending.size()));
        active_progress = &progress;
        if (!pending.empty() && pending.size() < layers_.size())
            std::fprintf(stderr, "loranull-build: resuming: %zu of %zu blocks already written\n",
                         layers_.size() - pending.size(), layers_.size());
        stream_blocks(checkpoint, pending, progress);
        progress.finish();
        active_progress = nullptr;
        if (stopped_) {
            std::fprintf(stderr, "loranull-build: stopped after %td block(s) (--stop-after-blocks, for testing); rerun "
                                 "with the same options to resume\n", o_.stop_after_blocks);
            return 3;
        }

        // 4. Assemble the outputs from the block files.
        const auto assembly_start = Clock::now();
        if (!o_.export_plain) write_residual_model(checkpoint);
        write_adapter();
        timings_.assembly = seconds_since(assembly_start);
        report(start);
        if (!o_.keep_blocks) {
            std::error_code ec;
            fs::remove_all(out / "blocks", ec);
        }
        return 0;
    }

private:
    // -- calibration ---------------------------------------------------------

    void read_calibration() {
        const std::string where = "--calib " + o_.calib;
        const io::SafetensorsReader file(o_.calib);
        if (!file.contains("input_ids"))
            tool_fail(where, ": no tensor 'input_ids' (expected token ids [samples, seq_len], I32 or I64; the file has ",
                      file.tensors().size(), " tensor(s))");
        const io::TensorInfo& info = file.info("input_ids");
        if (info.dtype != io::Dtype::I32 && info.dtype != io::Dtype::I64)
            tool_fail(where, ": tensor 'input_ids' has dtype ", io::dtype_name(info.dtype), ", expected I32 or I64");
        if (info.shape.size() != 2 || info.shape[0] < 1 || info.shape[1] < 1)
            tool_fail(where, ": tensor 'input_ids' has shape ", json(info.shape).dump(),
                      ", expected [samples, seq_len] with both >= 1");
        const Index file_samples = info.shape[0], file_seq = info.shape[1];
        samples_ = o_.samples ? o_.samples : file_samples;
        seq_len_ = o_.seq_len ? o_.seq_len : file_seq;
        if (samples_ > file_samples)
            tool_fail("--samples ", samples_, " exceeds the ", file_samples, " sequences of 'input_ids' in ", o_.calib);
        if (seq_len_ > file_seq)
            tool_fail("--seq-len ", seq_len_, " exceeds the sequence length ", file_seq, " of 'input_ids' in ", o_.calib);
        if (seq_len_ > config_.max_seq_len)
            tool_fail(where, ": sequences of ", seq_len_, " tokens exceed max_position_embeddings = ",
                      config_.max_seq_len, " of ", o_.model, "/config.json (use --seq-len)");
        const std::vector<std::int64_t> ids = file.read_integers("input_ids");
        tokens_.reserve(static_cast<std::size_t>(samples_ * seq_len_));
        for (Index s = 0; s < samples_; ++s)
            for (Index t = 0; t < seq_len_; ++t) {
                const std::int64_t id = ids[static_cast<std::size_t>(s * file_seq + t)];
                if (id < 0 || id >= config_.vocab_size)
                    tool_fail(where, ": input_ids[", s, ", ", t, "] = ", id, " is outside the vocabulary (vocab_size ",
                              config_.vocab_size, " in ", o_.model, "/config.json)");
                tokens_.push_back(static_cast<std::int32_t>(id));
            }
        calib_hash_ = file_hash(o_.calib);
        batch_ = o_.batch ? std::min(o_.batch, samples_) : std::clamp<Index>(4096 / seq_len_, 1, samples_);
    }

    /// Fewer tokens than a covariance's size: rank-deficient (rank C <= tokens).
    void check_rank_deficiency() {
        if (o_.calib.empty() || !method_.needs_data) return;
        const Index tokens = samples_ * seq_len_;
        for (auto [n, what] : {std::pair<Index, const char*>{config_.dim, "hidden_size"},
                               {config_.hidden_dim, "intermediate_size"}}) {
            if (tokens >= n) continue;
            const std::string message = "calibration has " + std::to_string(tokens) + " tokens (" +
                                        std::to_string(samples_) + " x " + std::to_string(seq_len_) +
                                        "), fewer than the " + std::to_string(n) + " inputs (" + what +
                                        ") of some projections: their covariances have rank <= " +
                                        std::to_string(tokens) + ", at least " + std::to_string(n - tokens) +
                                        " zero eigenvalues against rank " + std::to_string(o_.rank) +
                                        ", so the chosen directions are partly arbitrary";
            if (!o_.allow_rank_deficient)
                tool_fail(message, "; give at least ", n, " tokens, or --allow-rank-deficient to continue");
            warnings_.push_back("warning: " + message + " (continuing: --allow-rank-deficient)");
            break;
        }
    }

    // -- output folder and resumption -----------------------------------------

    json settings_json(HfCheckpointReader& checkpoint) const {
        json files = json::object();
        for (const std::string& f : checkpoint.files()) {
            std::error_code ec;
            files[f] = static_cast<std::int64_t>(fs::file_size(checkpoint.dir() / f, ec));
        }
        json s = json::object();
        s["format"] = settings_format;
        s["model_config"] = text_hash(checkpoint.config_json().dump());
        s["model_files"] = files;
        s["calib"] = o_.calib.empty() ? json(nullptr) : json(calib_hash_);
        s["samples"] = samples_;
        s["seq_len"] = seq_len_;
        s["batch"] = batch_;
        s["method"] = o_.method;
        s["rank"] = o_.rank;
        s["alpha"] = o_.alpha > 0 ? json(o_.alpha) : json("rank");
        s["seed"] = o_.seed;
        s["layers"] = layers_;
        s["normalisation"] = std::string(normalisation_name(o_.normalisation));
        s["dtype"] = o_.dtype ? std::string(io::dtype_name(*o_.dtype)) : "keep";
        s["export"] = o_.export_plain ? "plain" : "residual";
        return s;
    }

    /// Creates OUT or checks that it resumes a run of the same settings.
    /// Returns true when that run is already finished.
    bool prepare_output(const json& settings) {
        const fs::path out = o_.out;
        std::error_code ec;
        if (fs::exists(out) && !fs::is_directory(out)) tool_fail("--out ", o_.out, " exists and is not a folder");
        const bool empty = !fs::exists(out) || fs::is_empty(out, ec);
        if (empty) {
            fs::create_directories(out / "blocks", ec);
            if (ec) tool_fail("cannot create ", (out / "blocks").string(), ": ", ec.message());
            write_text_atomic(out / "build.json", settings.dump(2) + "\n");
            return false;
        }
        const fs::path build = out / "build.json";
        if (!fs::exists(build))
            tool_fail("--out ", o_.out, " is not empty and not a loranull-build run (no build.json): use an empty folder");
        json previous;
        try {
            std::ifstream in(build);
            previous = json::parse(in);
        } catch (const json::exception& e) {
            tool_fail("--out ", o_.out, ": build.json is not valid JSON (", e.what(), ")");
        }
        std::string differences;
        for (const auto& [key, value] : settings.items())
            if (!previous.contains(key) || previous[key] != value)
                differences += (differences.empty() ? "" : ", ") + key + " " +
                               (previous.contains(key) ? previous[key].dump() : "missing") + " -> " + value.dump();
        if (!differences.empty())
            tool_fail("--out ", o_.out, " holds a run with other settings (", differences,
                      "): it cannot be resumed; use another folder or delete it");
        if (fs::exists(out / "report.json")) return true;
        fs::create_directories(out / "blocks", ec);
        return false;
    }

    fs::path block_path(Index layer) const { return fs::path(o_.out) / "blocks" / block_file_name(layer); }

    bool block_done(Index layer) const {
        const fs::path path = block_path(layer);
        if (!fs::exists(path)) return false;
        const io::SafetensorsReader block(path);  // a corrupt file throws, naming it
        const auto& meta = block.metadata();
        auto get = [&](const char* key) { return meta.count(key) ? meta.at(key) : std::string(); };
        if (get("format") != block_format || get("settings") != settings_hash_ || get("layer") != std::to_string(layer))
            tool_fail(path.string(), " was not written by this run's settings (settings ", get("settings"),
                      ", expected ", settings_hash_, "): delete it to recompute the block");
        return true;
    }

    // -- the streamed pass ----------------------------------------------------

    Index input_dim(LinearInput i) const { return i == LinearInput::down_in ? config_.hidden_dim : config_.dim; }

    void stream_blocks(HfCheckpointReader& checkpoint, const std::vector<Index>& pending, Progress& progress) {
        if (pending.empty()) return;
        const std::set<Index> pending_set(pending.begin(), pending.end());
        const bool calibrate = !tokens_.empty();
        // Blocks to run: with calibration, every block up to the last pending one
        // (hidden states need them); without, only the pending ones.
        const Index last = pending.back();
        MatF hidden;
        if (calibrate) {
            progress.show("embedding");
            auto t = Clock::now();
            const MatF table = cpu_.transpose(cpu_.upload(
                checkpoint.read<float>("model.embed_tokens.weight", config_.vocab_size, config_.dim)));  // dim x vocab
            timings_.load += seconds_since(t);
            t = Clock::now();
            hidden = cpu_.embedding_forward(table, tokens_);  // dim x tokens
            timings_.embed += seconds_since(t);
        }
        Index written = 0;
        for (Index l = 0; l <= last; ++l) {
            const bool is_pending = pending_set.count(l) != 0;
            if (!is_pending && !calibrate) continue;
            progress.show((is_pending ? "block " : "forward through finished block ") + std::to_string(l));
            auto t = Clock::now();
            const Model::Block block = checkpoint.load_block<float>(cpu_, l);
            timings_.load += seconds_since(t);

            std::array<std::optional<Covariance<CpuBackend, double>>, 4> cov;
            if (calibrate && is_pending)
                for (LinearInput i : all_inputs)
                    cov[static_cast<std::size_t>(i)].emplace(cpu_, input_dim(i), o_.normalisation,
                                                             o_.calib + "#" + calib_hash_);
            // Forward every chunk of sequences through the block, accumulating
            // the covariances in the hook; the hidden states are replaced in place.
            if (calibrate) {
                double hook_seconds = 0;
                Model::Hook hook;
                if (is_pending)
                    hook = [&](Index, LinearInput which, const MatF& x) {
                        const auto h = Clock::now();
                        cov[static_cast<std::size_t>(which)]->add_samples(x, seq_len_);
                        hook_seconds += seconds_since(h);
                    };
                const bool need_output = l < last;  // the last pending block's output is never used
                t = Clock::now();
                for (Index s = 0; s < samples_; s += batch_) {
                    const Index count = std::min(batch_, samples_ - s);
                    MatF x = cpu_.block(hidden, 0, s * seq_len_, config_.dim, count * seq_len_);
                    MatF y = Model::block_forward(cpu_, config_, block, l, std::move(x), seq_len_, hook);
                    if (need_output) cpu_.set_block(hidden, 0, s * seq_len_, y);
                }
                timings_.forward += seconds_since(t) - hook_seconds;
                timings_.covariance += hook_seconds;
            }
            if (!is_pending) continue;
            if (o_.save_covariances && calibrate) {
                const fs::path dir = fs::path(o_.out) / "covariances";
                fs::create_directories(dir);
                for (LinearInput i : all_inputs)
                    save_covariance(*cov[static_cast<std::size_t>(i)],
                                    dir / ("layer-" + std::to_string(l) + "." + input_name(i) + ".safetensors"));
            }
            decompose_and_write(checkpoint, l, cov);
            ++written;
            progress.step("block " + std::to_string(l) + " written");
            if (o_.stop_after_blocks >= 0 && written >= o_.stop_after_blocks && l != last) {
                stopped_ = true;
                return;
            }
        }
    }

    /// Decomposes block `layer`'s seven projections and writes its block file.
    void decompose_and_write(HfCheckpointReader& checkpoint, Index layer,
                             const std::array<std::optional<Covariance<CpuBackend, double>>, 4>& cov) {
        const auto t0 = Clock::now();
        const double alpha = o_.alpha > 0 ? o_.alpha : double(o_.rank);
        const LoraConfig config{o_.rank, alpha, o_.seed + static_cast<std::uint64_t>(layer) * 7919u};
        const double s = config.scale();
        std::array<std::optional<NullSpace<CpuBackend, double>>, 4> null_spaces;
        std::array<std::optional<MatD>, 4> c_matrix;  // C per input, for the report
        auto covariance_matrix = [&](LinearInput i) -> const MatD& {
            auto& c = c_matrix[static_cast<std::size_t>(i)];
            if (!c) c = cov[static_cast<std::size_t>(i)]->matrix();
            return *c;
        };
        io::SafetensorsWriter writer;  // one block: seven residuals and adapters
        json reports = json::array();
        for (ProjectionKind kind : all_projections) {
            const LinearInput input = input_of(kind);
            const auto& c = cov[static_cast<std::size_t>(input)];
            const std::string name = layer_prefix(layer) + projection_path(kind);
            const auto shape = checkpoint.projection_shape(kind);
            const io::TensorInfo& info = checkpoint.checked_info(name + ".weight", shape[0], shape[1]);
            const io::Dtype residual_dtype = o_.dtype.value_or(info.dtype);
            const io::Dtype adapter_dtype = residual_dtype == io::Dtype::F64 ? io::Dtype::F32 : residual_dtype;
            const MatD w = cpu_.upload(checkpoint.read<double>(name + ".weight", shape[0], shape[1]));
            LoraFactors<CpuBackend, double> f;
            switch (method_.method) {
                case Method::lora: f = lora(cpu_, w, config); break;
                case Method::pissa: f = pissa(cpu_, w, config); break;
                case Method::pissa_fast: f = pissa_fast(cpu_, w, config); break;
                case Method::milora: f = milora(cpu_, w, config); break;
                case Method::corda_kpm: f = corda_kpm(cpu_, w, covariance_matrix(input), config); break;
                case Method::corda_ipm: f = corda_ipm(cpu_, w, covariance_matrix(input), config); break;
                case Method::lora_null: {
                    auto& ns = null_spaces[static_cast<std::size_t>(input)];
                    if (!ns) {
                        ns = null_space(*c, o_.rank);
                        if (ns->rank_report.deficient) {
                            const std::string message = "layer " + std::to_string(layer) + " " + input_name(input) +
                                                        ": " + ns->rank_report.message();
                            if (!o_.allow_rank_deficient)
                                tool_fail(message, " (pass --allow-rank-deficient to continue)");
                            warnings_.push_back("warning: " + message);
                        }
                    }
                    f = lora_null(cpu_, w, *ns, config);
                    break;
                }
            }
            if (!cpu_.all_finite(f.A) || !cpu_.all_finite(f.B) || !cpu_.all_finite(f.W_res))
                tool_fail(name, ": the ", o_.method, " initialisation produced NaN or Inf");
            MatD check = w - f.W_res;
            check.noalias() -= s * f.B * f.A;
            json r = json::object();
            r["module"] = projection_path(kind);
            r["reconstruction"] = check.norm() / std::max(w.norm(), 1e-300);
            if (c) {
                // SPEC.md section 4 on the calibration data X, relative to ||W X||_F:
                //   energy = ||X^T Q||_F^2 / ||X||_F^2, Q an orthonormal basis of A0's
                //            row space (for LoRA-Null, span(U_null): the share of the
                //            calibration energy in the null space, sum of the r
                //            smallest eigenvalues / trace C);
                //   bound  = s ||A0||_2 ||X^T Q||_F / ||W X||_F, the bound on the
                //            relative change of the layer's output on X per unit of
                //            ||B' - B0||_2 (v2: A frozen);
                //   tight  = s ||A0 X||_F / ||W X||_F, the first, tighter inequality.
                // All from C = X X^T / normaliser (the normaliser cancels).
                const MatD& cm = covariance_matrix(input);
                const MatD q = cpu_.thin_q(cpu_.transpose(f.A));  // n x r
                const double null_energy = std::max(0.0, (q.transpose() * cm * q).trace());
                const double total = cm.trace();
                const double a_norm = cpu_.thin_svd(f.A).singular_values.at(0);
                const double out_energy = std::max(0.0, ((w * cm).cwiseProduct(w)).sum());
                const double adapter_energy = std::max(0.0, ((f.A * cm).cwiseProduct(f.A)).sum());
                r["energy"] = total > 0 ? null_energy / total : 0.0;
                r["bound"] = out_energy > 0 ? s * a_norm * std::sqrt(null_energy / out_energy) : 0.0;
                r["tight"] = out_energy > 0 ? s * std::sqrt(adapter_energy / out_energy) : 0.0;
                if (method_.method == Method::lora_null)
                    r["null_space_energy"] = null_spaces[static_cast<std::size_t>(input)]->energy_fraction();
            }
            reports.push_back(r);
            writer.add(name + ".weight", cpu_.download(f.W_res), residual_dtype);
            writer.add(name + ".lora_A.weight", cpu_.download(f.A), adapter_dtype);
            writer.add(name + ".lora_B.weight", cpu_.download(f.B), adapter_dtype);
        }
        timings_.decomposition += seconds_since(t0);
        const auto t1 = Clock::now();
        writer.set_metadata("format", block_format);
        writer.set_metadata("settings", settings_hash_);
        writer.set_metadata("layer", std::to_string(layer));
        writer.set_metadata("scale", number_text(config.scale()));
        writer.set_metadata("report", reports.dump());
        if (cov[0]) {
            writer.set_metadata("tokens", std::to_string(cov[0]->tokens()));
            writer.set_metadata("normalisation", std::string(normalisation_name(o_.normalisation)));
        }
        writer.write(block_path(layer));  // block-NNNNN.safetensors.tmp, renamed when complete
        timings_.write += seconds_since(t1);
    }

    // -- assembly ---------------------------------------------------------------

    /// OUT/model: the input checkpoint with every adapted projection's weight
    /// replaced by its residual, same files (shards), same tensor order.
    void write_residual_model(HfCheckpointReader& checkpoint) {
        const fs::path dir = fs::path(o_.out) / "model";
        fs::create_directories(dir);
        std::map<std::string, Index> adapted;  // weight name -> layer
        for (Index l : layers_)
            for (ProjectionKind kind : all_projections) adapted[layer_prefix(l) + projection_path(kind) + ".weight"] = l;
        std::map<Index, std::unique_ptr<io::SafetensorsReader>> blocks;
        auto block = [&](Index l) -> const io::SafetensorsReader& {
            auto& r = blocks[l];
            if (!r) r = std::make_unique<io::SafetensorsReader>(block_path(l));
            return *r;
        };
        std::uint64_t total_size = 0;
        for (const std::string& file : checkpoint.files()) {
            const io::SafetensorsReader& in = checkpoint.reader(file);
            std::vector<const io::TensorInfo*> order;
            for (const auto& [name, info] : in.tensors()) order.push_back(&info);
            std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
            std::vector<OutTensor> tensors;
            for (const io::TensorInfo* info : order) {
                const std::string name = info->name;
                if (auto it = adapted.find(name); it != adapted.end()) {
                    const io::SafetensorsReader& b = block(it->second);
                    const io::TensorInfo& src = b.info(name);
                    const fs::path path = b.path();
                    tensors.push_back({name, src.dtype, src.shape, [path, src](std::ostream& out) {
                                           copy_tensor_bytes(path, src, out);
                                       }});
                } else if (!o_.dtype || !io::is_floating(info->dtype) || info->dtype == *o_.dtype) {
                    const fs::path path = in.path();
                    const io::TensorInfo src = *info;
                    tensors.push_back({name, src.dtype, src.shape, [path, src](std::ostream& out) {
                                           copy_tensor_bytes(path, src, out);
                                       }});
                } else {
                    const io::SafetensorsReader* reader = &in;
                    const io::Dtype dtype = *o_.dtype;
                    tensors.push_back({name, dtype, info->shape, [reader, name, dtype](std::ostream& out) {
                                           encode(reader->read_matrix<double>(name), dtype, out);
                                       }});
                }
                total_size += tensors.back().bytes();
            }
            std::map<std::string, std::string> metadata = in.metadata();
            metadata["format"] = "pt";
            metadata["loranull.note"] = "residual model of loranull-build (" + o_.method + ", rank " +
                                        std::to_string(o_.rank) + "): load with the adapter in ../adapter";
            write_safetensors_streamed(dir / file, metadata, tensors);
        }
        if (checkpoint.sharded()) {
            json index = checkpoint.index_json();
            index["metadata"]["total_size"] = total_size;
            write_text_atomic(dir / "model.safetensors.index.json", index.dump(2) + "\n");
        }
        json config = checkpoint.config_json();
        if (o_.dtype)
            config["torch_dtype"] = *o_.dtype == io::Dtype::BF16 ? "bfloat16" : *o_.dtype == io::Dtype::F16 ? "float16" : "float32";
        for (const char* extra : {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                  "generation_config.json", "added_tokens.json"}) {
            std::error_code ec;
            if (fs::is_regular_file(checkpoint.dir() / extra))
                fs::copy_file(checkpoint.dir() / extra, dir / extra, fs::copy_options::overwrite_existing, ec);
        }
        write_text_atomic(dir / "config.json", config.dump(2) + "\n");  // last: a model folder with a config is complete
    }

    /// OUT/adapter: adapter_model.safetensors + adapter_config.json.
    void write_adapter() {
        const fs::path dir = fs::path(o_.out) / "adapter";
        fs::create_directories(dir);
        const double alpha = o_.alpha > 0 ? o_.alpha : double(o_.rank);
        const double s = alpha / double(o_.rank);
        std::vector<OutTensor> tensors;
        std::vector<std::unique_ptr<io::SafetensorsReader>> blocks;
        for (Index l : layers_) {
            blocks.push_back(std::make_unique<io::SafetensorsReader>(block_path(l)));
            const io::SafetensorsReader* b = blocks.back().get();
            for (ProjectionKind kind : all_projections) {
                const std::string module = layer_prefix(l) + projection_path(kind);
                const io::TensorInfo& a = b->info(module + ".lora_A.weight");
                const io::TensorInfo& bb = b->info(module + ".lora_B.weight");
                const std::string prefix = "base_model.model." + module;
                if (!o_.export_plain) {
                    const fs::path path = b->path();
                    tensors.push_back({prefix + ".lora_A.weight", a.dtype, a.shape,
                                       [path, a](std::ostream& out) { copy_tensor_bytes(path, a, out); }});
                    tensors.push_back({prefix + ".lora_B.weight", bb.dtype, bb.shape,
                                       [path, bb](std::ostream& out) { copy_tensor_bytes(path, bb, out); }});
                } else {
                    // The rank-2r conversion for the unmodified base (SPEC.md section 6):
                    // down = [A; A0], up = s [B, -B0]; at initialisation A = A0, B = B0.
                    const std::string an = a.name, bn = bb.name;
                    tensors.push_back({prefix + ".lora_A.weight", a.dtype, {2 * a.shape[0], a.shape[1]},
                                       [b, an, dtype = a.dtype](std::ostream& out) {
                                           const HostMatrix<double> m = b->read_matrix<double>(an);
                                           HostMatrix<double> down(2 * m.rows(), m.cols());
                                           for (Index i = 0; i < m.rows(); ++i)
                                               for (Index j = 0; j < m.cols(); ++j)
                                                   down(i, j) = down(i + m.rows(), j) = m(i, j);
                                           encode(down, dtype, out);
                                       }});
                    tensors.push_back({prefix + ".lora_B.weight", bb.dtype, {bb.shape[0], 2 * bb.shape[1]},
                                       [b, bn, s, dtype = bb.dtype](std::ostream& out) {
                                           const HostMatrix<double> m = b->read_matrix<double>(bn);
                                           HostMatrix<double> up(m.rows(), 2 * m.cols());
                                           for (Index i = 0; i < m.rows(); ++i)
                                               for (Index j = 0; j < m.cols(); ++j) {
                                                   up(i, j) = s * m(i, j);
                                                   up(i, j + m.cols()) = -s * m(i, j);
                                               }
                                           encode(up, dtype, out);
                                       }});
                }
            }
        }
        std::map<std::string, std::string> metadata{{"format", "pt"},
                                                    {"loranull.mode", o_.export_plain ? "plain" : "residual"},
                                                    {"loranull.method", o_.method}};
        write_safetensors_streamed(dir / "adapter_model.safetensors", metadata, tensors);
        std::vector<std::string> targets;
        for (ProjectionKind kind : all_projections) targets.push_back(projection_name(kind));
        std::sort(targets.begin(), targets.end());
        const Index r = o_.export_plain ? 2 * o_.rank : o_.rank;
        const double lora_alpha = o_.export_plain ? double(r) : alpha;
        const std::string base = o_.export_plain ? o_.model : "../model";
        write_text_atomic(dir / "adapter_config.json", peft_config(r, lora_alpha, targets, base).dump(2) + "\n");
    }

    // -- report ----------------------------------------------------------------

    void report(Clock::time_point start) {
        json layers = json::array();
        struct Row {
            Index layer;
            std::string module;
            double energy, bound;
        };
        std::vector<Row> rows;
        const bool has_data = !tokens_.empty();
        if (has_data)
            std::printf("%-5s %-16s %-11s %-11s %-11s %s\n", "layer", "module", "energy", "bound", "tight",
                        "reconstruction");
        else
            std::printf("%-5s %-16s %s\n", "layer", "module", "reconstruction");
        for (Index l : layers_) {
            const io::SafetensorsReader b(block_path(l));
            json modules = json::parse(b.metadata().at("report"));
            for (const auto& m : modules) {
                const std::string module = m["module"];
                if (has_data) {
                    std::printf("%-5td %-16s %-11.3e %-11.3e %-11.3e %.1e\n", l, module.c_str(), double(m["energy"]),
                                double(m["bound"]), double(m["tight"]), double(m["reconstruction"]));
                    rows.push_back({l, module, m["energy"], m["bound"]});
                } else {
                    std::printf("%-5td %-16s %.1e\n", l, module.c_str(), double(m["reconstruction"]));
                }
            }
            layers.push_back({{"layer", l}, {"modules", modules}});
        }
        if (!rows.empty()) {
            std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.bound > b.bound; });
            std::printf("knowledge kept worst (largest bound first):");
            for (std::size_t i = 0; i < std::min<std::size_t>(5, rows.size()); ++i)
                std::printf("%s layer %td %s (%.2e)", i ? "," : "", rows[i].layer, rows[i].module.c_str(), rows[i].bound);
            std::printf("\n");
        }
        const double total = seconds_since(start);
        const long long peak = peak_memory_bytes();
        std::printf("time %.2f s: load %.2f, embedding %.2f, forward %.2f, covariance %.2f, decomposition %.2f, "
                    "block writes %.2f, assembly %.2f\n",
                    total, timings_.load, timings_.embed, timings_.forward, timings_.covariance,
                    timings_.decomposition, timings_.write, timings_.assembly);
        std::printf("peak memory (VmHWM): %.1f MiB\n", double(peak) / (1024.0 * 1024.0));
        json r = json::object();
        r["format"] = "loranull.build.report/1";
        r["method"] = o_.method;
        r["rank"] = o_.rank;
        r["tokens"] = samples_ * seq_len_;
        r["layers"] = layers;
        r["seconds"] = {{"total", total},          {"load", timings_.load},
                        {"embedding", timings_.embed}, {"forward", timings_.forward},
                        {"covariance", timings_.covariance}, {"decomposition", timings_.decomposition},
                        {"block_writes", timings_.write},    {"assembly", timings_.assembly}};
        r["peak_memory_bytes"] = peak;
        r["warnings"] = warnings_;
        write_text_atomic(fs::path(o_.out) / "report.json", r.dump(2) + "\n");  // last: marks the run finished
        for (const std::string& w : warnings_) std::fprintf(stderr, "loranull-build: %s\n", w.c_str());
        std::printf("wrote %s%s/adapter\n", o_.export_plain ? "" : (o_.out + "/model and ").c_str(), o_.out.c_str());
    }

    Options o_;
    const MethodInfo& method_;
    CpuBackend cpu_;
    LlamaConfig config_;
    std::vector<Index> layers_;
    std::vector<std::int32_t> tokens_;
    Index samples_ = 0, seq_len_ = 0, batch_ = 0;
    std::string calib_hash_, settings_hash_;
    std::vector<std::string> warnings_;
    Timings timings_;
    bool stopped_ = false;
};

void print_error(const std::string& message) {
    if (active_progress) active_progress->finish();
    std::string line = message;
    std::replace(line.begin(), line.end(), '\n', ' ');
    // The library's errors start with "loranull::<where>:"; where the tool
    // passed an option ("--model DIR") as the place, the prefix says nothing.
    if (line.rfind("loranull::--", 0) == 0) line.erase(0, std::strlen("loranull::"));
    std::fprintf(stderr, "loranull-build: error: %s\n", line.c_str());
}

}  // namespace

int main(int argc, char** argv) {
    try {
        Builder builder(parse(argc, argv));
        return builder.run();
    } catch (const UsageError& e) {
        print_error(e.what());
        return 2;
    } catch (const std::exception& e) {
        print_error(e.what());
        return 1;
    }
}
