#pragma once
// What the tests of loranull-finetune share (test_loranull_finetune.cpp, and
// test_loranull_finetune_gpu.cpp for the GPU suite): every family as a tiny
// checkpoint with a byte-level tokenizer.json, its LoRA-Null v2 adapter from
// loranull-build, training text and prompt/response pairs, and the tools run
// as a user runs them.

#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <loranull/io/gnuplot.hpp>
#include <loranull/io/safetensors.hpp>

#include "family_fixtures.hpp"
#include "run_tool.hpp"
#include "test_util.hpp"
#include "text_fixtures.hpp"

#if !defined(LORANULL_FINETUNE_PATH) || !defined(LORANULL_BUILD_PATH) || !defined(LORANULL_EVAL_PATH)
#error "the paths of loranull-finetune, loranull-build and loranull-eval must be defined by the build"
#endif

using namespace loranull;
using test::q;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

const fs::path& dir() { return test::scratch_dir("test_finetune"); }

test::ToolResult finetune(const std::string& args) { return test::run_tool(LORANULL_FINETUNE_PATH, args, dir()); }
test::ToolResult build(const std::string& args) { return test::run_tool(LORANULL_BUILD_PATH, args, dir()); }
test::ToolResult eval(const std::string& args) { return test::run_tool(LORANULL_EVAL_PATH, args, dir()); }

constexpr Index seq_len = 12;  // inside Mistral's sliding window of 12

/// Sentences of a small made-up world, deterministic.
std::string sentences(int count, int salt) {
    const char* subjects[] = {"the cat", "a robot", "my friend", "the river", "one bird"};
    const char* verbs[] = {"sees", "likes", "finds", "follows", "paints"};
    const char* objects[] = {"the moon", "a red box", "seven stones", "the old tree", "green hills"};
    std::string text;
    for (int i = 0; i < count; ++i)
        text += std::string(subjects[(i + salt) % 5]) + " " + verbs[(3 * i + salt) % 5] + " " + objects[(7 * i + 2 * salt) % 5] + ".\n";
    return text;
}

/// A family's checkpoint with a byte-level tokenizer (ids < 1003) beside it.
fs::path write_model(const test_family::Family& family) {
    test_family::Family f = family;
    f.config["vocab_size"] = 1003;  // 256 bytes, the merges, BOS 1000, EOS 1001
    f.config["max_position_embeddings"] = 256;  // room for the prompt template (Mistral's window stays 12)
    const fs::path path = test_family::write_family(f, dir() / "models");
    const test_text::ByteLevelVocab v({{"e", " "}, {"t", "h"}, {"th", "e"}, {"a", "n"}, {" ", "t"}}, {"ing"});
    test_text::write_file(path, "tokenizer.json", test_text::llama3_json(v).dump());
    test_text::write_file(path, "tokenizer_config.json",
                          json{{"bos_token", "<|begin_of_text|>"}, {"eos_token", "<|end_of_text|>"}}.dump());
    return path;
}

struct Files {
    fs::path calib = test_text::write_file(dir(), "calib.txt", sentences(40, 0));
    // Unlike the calibration text (digits and capitals: outside what the null
    // space was fitted to), 4 windows of 12 tokens: every step sees all of them.
    fs::path train = test_text::write_file(dir(), "train.txt", "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ZYXW\n");
    fs::path pairs;
    Files() {
        std::string jsonl;
        for (int i = 0; i < 4; ++i)
            jsonl += json{{"q", "Name " + std::to_string(i)}, {"a", std::to_string(i + 1)}, {"other", 1}}.dump() + "\n";
        pairs = test_text::write_file(dir(), "pairs.jsonl", jsonl);
    }
};
const Files& files() {
    static const Files f;
    return f;
}

/// loranull-build's residual model and LoRA-Null v2 adapter for `family`.
fs::path built(const test_family::Family& family) {
    const fs::path out = dir() / "built" / family.name;
    if (fs::exists(out / "report.json")) return out;
    const fs::path model = write_model(family);
    const auto r = build("--model " + q(model) + " --method lora-null-v2 --rank 4 --calib-text " + q(files().calib) +
                         " --samples 8 --seq-len " + std::to_string(seq_len) + " --out " + q(out));
    REQUIRE_MESSAGE(r.status == 0, r.err);
    return out;
}

test_family::Family family(const std::string& name) {
    for (const auto& f : test_family::families())
        if (f.name == name) return f;
    FAIL("no family ", name);
    return {};
}

json read_json(const fs::path& path) { return json::parse(test::slurp(path)); }

/// The loss column of loss.csv.
std::vector<double> losses(const fs::path& run) {
    std::vector<double> out;
    std::istringstream in(test::slurp(run / "loss.csv"));
    std::string line;
    std::getline(in, line);
    while (std::getline(in, line)) out.push_back(std::stod(line.substr(line.find(',') + 1)));
    return out;
}

/// loss.csv without its seconds column (the rest must match bit for bit).
std::string loss_table(const fs::path& run) {
    std::istringstream in(test::slurp(run / "loss.csv"));
    std::string line, out;
    while (std::getline(in, line)) out += line.substr(0, line.rfind(',')) + "\n";
    return out;
}

HostMatrix<float> tensor(const fs::path& adapter, const std::string& name) {
    return io::SafetensorsReader(adapter / "adapter_model.safetensors").read_matrix<float>(name);
}

std::vector<std::string> tensor_names(const fs::path& adapter) {
    const io::SafetensorsReader file(adapter / "adapter_model.safetensors");
    std::vector<std::string> names;
    for (const auto& [name, info] : file.tensors()) names.push_back(name);
    return names;
}

double max_abs_difference(const HostMatrix<float>& a, const HostMatrix<float>& b) {
    REQUIRE(a.rows() == b.rows());
    REQUIRE(a.cols() == b.cols());
    double d = 0;
    for (Index i = 0; i < a.size(); ++i) d = std::max(d, std::abs(double(a.data()[i]) - double(b.data()[i])));
    return d;
}

/// Two runs of the same training: every adapter tensor within `relative` of
/// its largest entry, every step's loss within `loss_epsilon` (relative).
void check_same_run(const fs::path& x_run, const fs::path& y_run, double relative, double loss_epsilon) {
    for (const std::string& name : tensor_names(x_run / "adapter")) {
        CAPTURE(name);
        const HostMatrix<float> x = tensor(x_run / "adapter", name), y = tensor(y_run / "adapter", name);
        double scale = 0;
        for (Index i = 0; i < x.size(); ++i) scale = std::max(scale, std::abs(double(x.data()[i])));
        CHECK(max_abs_difference(x, y) <= relative * scale);
    }
    const auto a = losses(x_run), b = losses(y_run);
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) CHECK(b[i] == doctest::Approx(a[i]).epsilon(loss_epsilon));
}

/// --model and --adapter of a build.
std::string common_args(const fs::path& built_out) {
    return "--model " + q(built_out / "model") + " --adapter " + q(built_out / "adapter") + " ";
}

}  // namespace
