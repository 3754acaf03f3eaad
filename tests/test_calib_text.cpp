// Calibration from text, end to end on a tiny model with a tokenizer.json the
// test writes: the windows read_calibration_text packs (BOS + a chunk of the
// EOS-joined document stream, drawn without replacement, seeded), and
// loranull-build / loranull-eval --calib-text equal to the same windows given
// as ids; every bad text input named by line.
#include <doctest/doctest.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "run_tool.hpp"
#include "test_util.hpp"
#include "text_fixtures.hpp"

using namespace loranull;
using test::q;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {
CpuBackend cpu;

const fs::path& dir() { return test::scratch_dir("test_calib_text"); }

const std::vector<std::string> documents = {
    "The hacker's dictionary: a kludge is a clever programming trick.",
    "Foo, bar and baz are the metasyntactic variables of 1972 and 2025.",
    "",  // an empty document still separates its neighbours
    "Don't panic: the answer is forty-two (42), said the computer.",
    "Line noise: !@#$%^&*() and \u00e9t\u00e9 caf\u00e9 \u4e2d\u6587 \U0001F600 end.",
};

/// A model folder: a tiny LLaMA 3 layout (vocab covering the tokenizer's ids)
/// with a byte-level tokenizer.json and its tokenizer_config.json.
struct Fixture {
    fs::path model = dir() / "model", lines = dir() / "calib.txt", jsonl = dir() / "calib.jsonl";
    text::Tokenizer tokenizer;  // written into `model` by make_tokenizer
    LlamaConfig config;

    Fixture() : tokenizer(make_tokenizer()) {
        config.dim = 16;
        config.n_layers = 2;
        config.n_heads = 4;
        config.n_kv_heads = 2;
        config.hidden_dim = 24;
        config.vocab_size = 1003;  // ids 0 .. 1002 (BOS 1000, EOS 1001)
        config.max_seq_len = 32;
        LlamaModel<CpuBackend, float> m(cpu, config);
        m.init_random(9);
        io::save_hf_checkpoint(m, model);
        std::string text, objects;
        for (const std::string& d : documents) {
            text += d + "\n";
            objects += json{{"id", objects.size()}, {"body", d}}.dump() + "\n";
        }
        test_text::write_file(dir(), "calib.txt", text);
        test_text::write_file(dir(), "calib.jsonl", objects);
    }

    text::Tokenizer make_tokenizer() const {
        const test_text::ByteLevelVocab v({{"e", " "}, {"t", "h"}, {"th", "e"}, {"a", "n"}, {" ", "t"}}, {"ing"});
        test_text::write_file(model, "tokenizer.json", test_text::llama3_json(v).dump());
        test_text::write_file(model, "tokenizer_config.json",
                              json{{"bos_token", "<|begin_of_text|>"}, {"eos_token", "<|end_of_text|>"}}.dump());
        return text::Tokenizer::from_folder(model.string());
    }
};
const Fixture& fixture() {
    static const Fixture f;
    return f;
}

}  // namespace

TEST_CASE("read_calibration_text: BOS + disjoint chunks of the EOS-joined stream, seeded, in stream order") {
    const Fixture& fx = fixture();
    REQUIRE(fx.tokenizer.bos_id() == 1000);
    REQUIRE(fx.tokenizer.eos_id() == 1001);
    std::vector<std::int32_t> stream;  // the documents, each without special tokens, EOS between
    for (std::size_t i = 0; i < documents.size(); ++i) {
        if (i > 0) stream.push_back(1001);
        const auto ids = fx.tokenizer.encode(documents[i], false);
        stream.insert(stream.end(), ids.begin(), ids.end());
    }
    const Index T = 9, chunk = T - 1, N = 5;
    const auto got = pipeline::read_calibration_text(fx.lines.string(), "", "text", N, T, 3, fx.tokenizer, fx.config,
                                                     fx.model.string());
    REQUIRE(got.samples == N);
    REQUIRE(got.seq_len == T);
    REQUIRE(got.tokens.size() == std::size_t(N * T));
    CHECK(got.source["documents"] == documents.size());
    CHECK(got.source["text_tokens"] == stream.size());
    Index previous = -1;
    for (Index w = 0; w < N; ++w) {
        const auto window = got.tokens.begin() + w * T;
        CHECK(window[0] == 1000);
        // Find the chunk index whose tokens equal this window's tail.
        Index found = -1;
        for (Index c = 0; c * chunk + chunk <= Index(stream.size()) && found < 0; ++c)
            if (std::equal(window + 1, window + T, stream.begin() + c * chunk) && c > previous) found = c;
        CHECK(found > previous);  // a whole chunk, each once, in stream order
        previous = found;
    }
    // JSONL with a field gives the same windows; another seed other ones.
    const auto from_json = pipeline::read_calibration_text(fx.jsonl.string(), "", "body", N, T, 3, fx.tokenizer,
                                                           fx.config, fx.model.string());
    CHECK(from_json.tokens == got.tokens);
    const auto reseeded = pipeline::read_calibration_text(fx.lines.string(), "lines", "text", N, T, 4, fx.tokenizer,
                                                          fx.config, fx.model.string());
    CHECK(reseeded.tokens != got.tokens);
    // Too little text: N x (T - 1) tokens needed.
    const std::string message = test::error_message([&] {
        pipeline::read_calibration_text(fx.lines.string(), "", "text", 100, T, 3, fx.tokenizer, fx.config, fx.model.string());
    });
    CHECK(message.find("100 windows of 9 tokens need at least 800 tokens of text (plus a BOS each); the 5 document(s) give ") !=
          std::string::npos);
}

TEST_CASE("loranull-build --calib-text equals --calib with the same windows, and so does loranull-eval") {
    const Fixture& fx = fixture();
    const Index N = 6, T = 10;
    const auto windows = pipeline::read_calibration_text(fx.lines.string(), "", "text", N, T, 5, fx.tokenizer, fx.config,
                                                         fx.model.string());
    io::SafetensorsWriter ids;
    ids.add_integers("input_ids", std::vector<std::int64_t>(windows.tokens.begin(), windows.tokens.end()), {N, T});
    ids.write(dir() / "windows.safetensors");
    const std::string common = "--model " + q(fx.model) + " --method lora-null --rank 3 --allow-rank-deficient ";
    const auto from_text = test::run_tool(LORANULL_BUILD_PATH,
                                          common + "--calib-text " + q(fx.lines) + " --samples 6 --seq-len 10 --seed 5 --out " +
                                              q(dir() / "out-text"),
                                          dir());
    INFO(from_text.err);
    REQUIRE(from_text.status == 0);
    const auto from_ids = test::run_tool(
        LORANULL_BUILD_PATH, common + "--calib " + q(dir() / "windows.safetensors") + " --out " + q(dir() / "out-ids"), dir());
    REQUIRE(from_ids.status == 0);
    const io::SafetensorsReader a(dir() / "out-text" / "adapter" / "adapter_model.safetensors");
    const io::SafetensorsReader b(dir() / "out-ids" / "adapter" / "adapter_model.safetensors");
    for (const auto& [name, info] : a.tensors())
        CHECK(cpu.upload(a.read_matrix<double>(name)) == cpu.upload(b.read_matrix<double>(name)));
    CHECK(a.tensors().size() == b.tensors().size());
    const json recorded = json::parse(a.metadata().at("loranull.calibration"));
    CHECK(recorded["windows"] == N);
    CHECK(recorded["seq_len"] == T);
    CHECK(recorded["seed"] == 5);
    CHECK(recorded["hash"] == windows.hash);
    const json report = json::parse(test::slurp(dir() / "out-text" / "report.json"));
    CHECK(report["calibration"]["documents"] == documents.size());
    CHECK(report["tokens"] == N * T);

    const auto eval_text = test::run_tool(LORANULL_EVAL_PATH,
                                          "--model " + q(fx.model) + " --calib-text " + q(fx.jsonl) +
                                              " --text-field body --samples 6 --seq-len 10 --seed 5",
                                          dir());
    const auto eval_ids =
        test::run_tool(LORANULL_EVAL_PATH, "--model " + q(fx.model) + " --calib " + q(dir() / "windows.safetensors"), dir());
    INFO(eval_text.err);
    REQUIRE(eval_text.status == 0);
    CHECK(eval_text.out == eval_ids.out);
}

TEST_CASE("--calib-text: bad text is one error line naming the line, bad requests exit 2") {
    const Fixture& fx = fixture();
    test_text::write_file(dir(), "bad_utf8.txt", "fine\nbad \xff byte\n");
    test_text::write_file(dir(), "bad.jsonl", "{\"text\": \"ok\"}\n{\"text\": 3}\n");
    test_text::write_file(dir() / "no_tokenizer", "config.json", test::slurp(fx.model / "config.json"));
    fs::copy_file(fx.model / "model.safetensors", dir() / "no_tokenizer" / "model.safetensors", fs::copy_options::overwrite_existing);
    const std::string m = "--model " + q(fx.model) + " --method lora-null --rank 3 --samples 2 --seq-len 8 ";
    struct Case {
        std::string args;
        int status;
        std::string message;
    };
    const std::vector<Case> cases{
        {m + "--calib-text " + q(dir() / "bad_utf8.txt"), 1, ": line 2: not valid UTF-8 (byte 5 of the line)"},
        {m + "--calib-text " + q(dir() / "bad.jsonl"), 1, ": line 2: field \"text\" is not a string (number)"},
        {m + "--calib-text " + q(fx.lines) + " --format csv", 2, "--format must be lines or jsonl, got 'csv'"},
        {m + "--calib-text " + q(fx.lines) + " --calib " + q(dir() / "windows.safetensors"), 2, "not both"},
        {m + "--text-field body", 2, "--format and --text-field describe --calib-text"},
        {"--model " + q(fx.model) + " --method lora-null --rank 3 --calib-text " + q(fx.lines) + " --seq-len 40", 1,
         "sequences of 40 tokens exceed max_position_embeddings = 32"},
        {"--model " + q(dir() / "no_tokenizer") + " --method lora-null --rank 3 --calib-text " + q(fx.lines), 1,
         "tokenizer.json"},
    };
    for (const Case& k : cases) {
        const auto r = test::run_tool(LORANULL_BUILD_PATH, k.args + " --out " + q(dir() / "refused"), dir());
        INFO(k.args, "\n", r.err);
        CHECK(r.status == k.status);
        CHECK(test::line_count(r.err) == 1);
        CHECK(r.err.rfind("loranull-build: error: ", 0) == 0);
        CHECK(r.err.find(k.message) != std::string::npos);
        CHECK(!fs::exists(dir() / "refused"));
    }
}
