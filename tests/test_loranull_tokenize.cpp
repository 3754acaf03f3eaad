// loranull-tokenize run as a user runs it (docs/loranull-tokenize.md): lines
// and jsonl in, one line of ids per document out, the same ids as the
// library, and every bad input or command line refused with its exit status.
#include <doctest/doctest.h>

#include <string>

#include <loranull/text.hpp>

#include "run_tool.hpp"
#include "text_fixtures.hpp"

using namespace test_text;

namespace {

const std::filesystem::path& scratch() { return test::scratch_dir("tokenize"); }

/// A LLaMA 3-style model folder (tokenizer.json only), written once.
const std::filesystem::path& model_dir() {
    static const std::filesystem::path dir = [] {
        const ByteLevelVocab v({{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {" ", "w"}, {"o", "r"}, {" w", "or"},
                                {"l", "d"}, {" wor", "ld"}});
        write_file(scratch() / "model", "tokenizer.json", llama3_json(v).dump());
        return scratch() / "model";
    }();
    return dir;
}

/// The tool on `input` (written to a file, fed on stdin) with `args`.
test::ToolResult tokenize(const std::string& input, const std::string& args) {
    const auto in = write_file(scratch(), "stdin.txt", input);
    return test::run_tool(LORANULL_TOKENIZE_PATH, args + " < " + test::q(in), scratch());
}

std::string ids_line(const Ids& ids) {
    std::string s;
    for (const std::int32_t id : ids) {
        if (!s.empty()) s += ' ';
        s += std::to_string(id);
    }
    s += '\n';
    return s;
}

}  // namespace

TEST_CASE("loranull-tokenize: lines, one line of ids per document, as the library encodes") {
    const auto t = loranull::text::Tokenizer::from_folder(model_dir().string());
    const std::string docs[] = {"hello world", "", "DON'T 12345\ttabs", "\xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\x99\x82<|eot_id|>"};
    std::string input, expected, expected_no_bos;
    for (const std::string& d : docs) {
        input += d + "\n";
        expected += ids_line(t.encode(d));
        expected_no_bos += ids_line(t.encode(d, false));
    }
    const auto r = tokenize(input, "--model " + test::q(model_dir()));
    CHECK(r.status == 0);
    CHECK(r.err.empty());
    CHECK(r.out == expected);
    CHECK(tokenize(input, "--model " + test::q(model_dir()) + " --no-bos").out == expected_no_bos);
    CHECK(tokenize("hello world\r\nhello", "--model=" + test::q(model_dir())).out ==
          ids_line(t.encode("hello world")) + ids_line(t.encode("hello")));  // CRLF, and a last line without \n
    CHECK(tokenize("hello\n", "--model " + test::q(model_dir() / "tokenizer.json")).out == ids_line(t.encode("hello")));
}

TEST_CASE("loranull-tokenize: jsonl, objects with a field or bare strings") {
    const auto t = loranull::text::Tokenizer::from_folder(model_dir().string());
    const std::string input = "{\"text\": \"hello\\nworld\", \"id\": 3}\n\"a bare string\"\n{\"text\": \"\\u00e9t\\u00e9\"}\n";
    const auto r = tokenize(input, "--model " + test::q(model_dir()) + " --format jsonl");
    CHECK(r.status == 0);
    CHECK(r.out == ids_line(t.encode("hello\nworld")) + ids_line(t.encode("a bare string")) +
                       ids_line(t.encode("\xC3\xA9t\xC3\xA9")));
    const auto f = tokenize("{\"body\": \"hello\"}\n", "--model " + test::q(model_dir()) + " --format jsonl --field body");
    CHECK(f.out == ids_line(t.encode("hello")));
}

TEST_CASE("loranull-tokenize: bad input names the line, exit 1") {
    const std::string model = "--model " + test::q(model_dir());
    const auto utf8 = tokenize("fine\nbad \xFF byte\n", model);
    CHECK(utf8.status == 1);
    CHECK(utf8.err == "loranull-tokenize: error: line 2: not valid UTF-8 (byte 5 of the line)\n");
    CHECK(utf8.out == ids_line(loranull::text::Tokenizer::from_folder(model_dir().string()).encode("fine")));
    const auto json = tokenize("{\"text\": \"a\"}\n{\"text\": \n", model + " --format jsonl");
    CHECK(json.status == 1);
    CHECK(json.err.find("error: line 2: not valid JSON") != std::string::npos);
    const auto missing = tokenize("{\"body\": \"a\"}\n", model + " --format jsonl");
    CHECK(missing.status == 1);
    CHECK(missing.err.find("line 1: the object has no field \"text\"") != std::string::npos);
    const auto number = tokenize("{\"text\": 5}\n", model + " --format jsonl");
    CHECK(number.err.find("line 1: field \"text\" is not a string (number)") != std::string::npos);
    const auto array = tokenize("[1]\n", model + " --format jsonl");
    CHECK(array.err.find("line 1: expected a JSON object or string, got array") != std::string::npos);
    const auto blank = tokenize("\n", model + " --format jsonl");
    CHECK(blank.status == 1);
    CHECK(blank.err.find("line 1: not valid JSON") != std::string::npos);
}

TEST_CASE("loranull-tokenize: bad model folders exit 1, bad command lines exit 2") {
    const auto sp_dir = scratch() / "sentencepiece";
    write_file(sp_dir, "tokenizer.model", "x");
    const auto sp = tokenize("a\n", "--model " + test::q(sp_dir));
    CHECK(sp.status == 1);
    CHECK(sp.err.find("has no tokenizer.json (only tokenizer.model") != std::string::npos);
    const auto bad_dir = scratch() / "wordpiece";
    write_file(bad_dir, "tokenizer.json", R"({"model": {"type": "WordPiece", "vocab": {}}})");
    const auto wp = tokenize("a\n", "--model " + test::q(bad_dir));
    CHECK(wp.status == 1);
    CHECK(wp.err.find("model type WordPiece is not supported") != std::string::npos);
    CHECK(test::line_count(wp.err) == 1);

    const std::string model = "--model " + test::q(model_dir());
    const struct {
        std::string args, message;
    } usage[] = {
        {"", "missing --model (see --help)"},
        {model + " --format csv", "--format must be lines or jsonl, got 'csv'"},
        {model + " --field body", "--field applies to --format jsonl only"},
        {model + " --model x", "--model given twice"},
        {model + " --no-bos --no-bos", "--no-bos given twice"},
        {model + " --colour", "unknown option '--colour'"},
        {model + " stray", "unexpected argument 'stray'"},
        {"--model", "--model needs a value"},
        {"--model=", "--model has an empty value"},
    };
    for (const auto& u : usage) {
        const auto r = tokenize("a\n", u.args);
        CHECK_MESSAGE(r.status == 2, u.args);
        CHECK_MESSAGE(r.err == "loranull-tokenize: error: " + u.message + "\n", u.args);
    }
    const auto help = tokenize("", "--help");
    CHECK(help.status == 0);
    CHECK(help.out.find("usage:\n  loranull-tokenize --model DIR") != std::string::npos);
}
