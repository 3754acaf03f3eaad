// loranull/text: tokenizer.json files built here (text_fixtures.hpp), ids
// worked out by hand or by the naive pipeline (reference.hpp: a hand-written
// scanner for LLaMA 3's pattern, BPE by repeated scan), round trips, and
// every bad input refused with a message that says what is wrong.
#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include <loranull/text.hpp>

#include "run_tool.hpp"
#include "text_fixtures.hpp"

using namespace test_text;
using loranull::text::Regex;
using loranull::text::Tokenizer;

namespace {

/// The pattern's matches as strings (checking that they tile the text).
std::vector<std::string> regex_pieces(const Regex& re, const std::string& text) {
    std::vector<std::string> out;
    for (const auto& s : re.find_matches(text)) {
        CHECK_MESSAGE(s.is_match, "unmatched text in '", text, "'");
        out.push_back(text.substr(s.begin, s.end - s.begin));
    }
    return out;
}

/// Random text over characters that exercise every class of the patterns.
std::string random_text(std::mt19937& rng, int length) {
    static const std::vector<std::string> alphabet = {
        "a", "b", "Z", "s", "t", "e", "l", "d", "'", "'", "S", "T", "L", "D", "M", "v", " ", " ", " ", "\n", "\r", "\t",
        "0", "1", "7", "9", ".", ",", "!", "?", "-", "(", "\xC2\xA0" /* NBSP */, "\xE3\x80\x80" /* ideographic space */,
        "\xE1\xA0\x8E" /* U+180E */, "\xE4\xB8\xAD" /* 中 */, "\xE6\x96\x87", "\xF0\x9F\x99\x82" /* emoji */,
        "\xC3\xA9" /* é */, "e\xCC\x81" /* e + combining acute */, "\xC5\xBF" /* long s */, "\xD9\xA3" /* Arabic-Indic 3 */,
        "\xE2\x85\xA0" /* Roman numeral I (Nl) */, "\xC2\xB2" /* superscript 2 (No) */, "\xE2\x80\xA8" /* line separator */};
    std::string s;
    for (int k = 0; k < length; ++k) s += alphabet[rng() % alphabet.size()];
    return s;
}

const ByteLevelVocab& small_byte_level_vocab() {
    static const ByteLevelVocab v({{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {" ", "w"}, {"o", "r"}, {" w", "or"},
                                   {"l", "d"}, {" wor", "ld"}, {"1", "2"}, {"12", "3"}, {" ", " "}, {"\n", "\n"},
                                   {"'", "s"}, {"e", "s"}, {"t", "e"}, {" ", "t"}, {" t", "e"}, {"\xE4", "\xB8"}, {"\xE4\xB8", "\xAD"}},
                                  {"xyz", " xyz"});
    return v;
}

}  // namespace

TEST_CASE("utf8: validation and Rust's lossy conversion (maximal subparts)") {
    using namespace loranull::text;
    CHECK(first_invalid_utf8("abc \xE4\xB8\xAD \xF0\x9F\x99\x82") == std::string::npos);
    CHECK(first_invalid_utf8("ab\xC0\x80") == 2);          // overlong
    CHECK(first_invalid_utf8("\xED\xA0\x80") == 0);        // a surrogate
    CHECK(first_invalid_utf8("\xF4\x90\x80\x80") == 0);    // above U+10FFFF
    CHECK(first_invalid_utf8("x\xF0\x9F\x99") == 1);       // truncated
    const std::string fffd = "\xEF\xBF\xBD";
    CHECK(utf8_lossy("x\xF0\x9F\x99") == "x" + fffd);     // one maximal subpart
    CHECK(utf8_lossy("\xC0\x80") == fffd + fffd);
    CHECK(utf8_lossy("\xED\xA0\x80") == fffd + fffd + fffd);
    CHECK(utf8_lossy("\xE2\x82" "A") == fffd + "A");
    CHECK(utf8_lossy("ok \xE4\xB8\xAD") == "ok \xE4\xB8\xAD");
}

TEST_CASE("regex: LLaMA 3's Split pattern on tricky strings, splits written by hand") {
    const Regex re(llama3_pattern, "test");
    using V = std::vector<std::string>;
    CHECK(regex_pieces(re, "Hello world") == V{"Hello", " world"});
    CHECK(regex_pieces(re, "DON'T we'Ll I'M they'RE") == V{"DON", "'T", " we", "'Ll", " I", "'M", " they", "'RE"});
    CHECK(regex_pieces(re, "don't 'hello ''") == V{"don", "'t", " '", "hello", " ''"});
    CHECK(regex_pieces(re, "12345 1234567") == V{"123", "45", " ", "123", "456", "7"});
    CHECK(regex_pieces(re, "3.14159") == V{"3", ".", "141", "59"});
    CHECK(regex_pieces(re, "a  b") == V{"a", " ", " b"});
    CHECK(regex_pieces(re, "x\n\n  y") == V{"x", "\n\n", " ", " y"});
    CHECK(regex_pieces(re, "end.\n") == V{"end", ".\n"});
    CHECK(regex_pieces(re, "a  \n") == V{"a", "  \n"});
    CHECK(regex_pieces(re, "a   ") == V{"a", "   "});
    CHECK(regex_pieces(re, "tab\there") == V{"tab", "\there"});
    CHECK(regex_pieces(re, "\r\nx") == V{"\r\n", "x"});
    CHECK(regex_pieces(re, "a\xC2\xA0" "b") == V{"a", "\xC2\xA0" "b"});  // NBSP is \s and [^\r\n\p{L}\p{N}]
    CHECK(regex_pieces(re, "\xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x99\x82\xF0\x9F\x99\x82!") ==
          V{"\xE4\xBD\xA0\xE5\xA5\xBD", " \xF0\x9F\x99\x82\xF0\x9F\x99\x82!"});
    CHECK(regex_pieces(re, "x'\xC5\xBF") == V{"x", "'\xC5\xBF"});  // (?i) folds long s to s, as Oniguruma does
    // U+180E is not White_Space (Oniguruma's \s skips it; PCRE2's \h would not): a symbol here.
    CHECK(regex_pieces(re, "a \xE1\xA0\x8E") == V{"a", " \xE1\xA0\x8E"});
}

TEST_CASE("regex: PCRE2 equals the hand-written scanner on random text (LLaMA 3 and Qwen2 patterns)") {
    const Regex llama3(llama3_pattern, "test"), qwen2(qwen2_pattern, "test");
    std::mt19937 rng(7);
    for (int trial = 0; trial < 3000; ++trial) {
        const std::string text = random_text(rng, 1 + trial % 40);
        REQUIRE_MESSAGE(regex_pieces(llama3, text) == ref::scan_llama3_pattern(text, 3), "text: '", text, "'");
        REQUIRE_MESSAGE(regex_pieces(qwen2, text) == ref::scan_llama3_pattern(text, 1), "text: '", text, "'");
    }
}

TEST_CASE("byte-level BPE (LLaMA 3 layout): ids by hand, BOS, ignore_merges, added tokens inside text") {
    const ByteLevelVocab& v = small_byte_level_vocab();
    const Tokenizer t = Tokenizer::from_json_text(llama3_json(v).dump());
    const std::int32_t hello = v.vocab.at("hello"), world = v.vocab.at(bl(" world")), xyz = v.vocab.at("xyz");
    CHECK(t.encode("hello world") == Ids{1000, hello, world});
    CHECK(t.encode("hello world", false) == Ids{hello, world});
    CHECK(t.bos_id() == 1000);
    CHECK(t.vocab_size() == 1003);
    CHECK(t.encode("12345", false) == Ids{v.vocab.at("123"), '4', '5'});
    CHECK(t.encode("xyz", false) == Ids{xyz});  // ignore_merges: the piece is a token, no merge reaches it
    CHECK(t.encode("a xyz", false) == Ids{'a', v.vocab.at(bl(" xyz"))});
    CHECK(t.encode("hello<|eot_id|> world", false) == Ids{hello, 1002, world});
    CHECK(t.encode("<|begin_of_text|>hello") == Ids{1000, 1000, hello});
    CHECK(t.encode("<|begin_of_text|<|eot_id|>", false) == Ids{'<', '|', 'b', 'e', 'g', 'i', 'n', '_', 'o', 'f', '_',
                                                              v.vocab.at("te"), 'x', 't', '|', 1002});
    CHECK(t.encode("", false).empty());
    CHECK(t.encode("") == Ids{1000});
    CHECK(t.decode({1000, hello, world}) == "<|begin_of_text|>hello world");
    CHECK(t.decode({1000, hello, 1002, world}, true) == "hello world");
    const Tokenizer no_ignore = Tokenizer::from_json_text(llama3_json(v, false).dump());
    CHECK(no_ignore.encode("xyz", false) == Ids{'x', 'y', 'z'});
    const Tokenizer pairs = Tokenizer::from_json_text(llama3_json(v, true, true).dump());
    CHECK(pairs.encode("hello world the tests") == t.encode("hello world the tests"));
}

TEST_CASE("byte-level BPE: equals the naive pipeline on random text, and decode(encode(t)) == t") {
    const ByteLevelVocab& v = small_byte_level_vocab();
    const Tokenizer llama3 = Tokenizer::from_json_text(llama3_json(v).dump());
    const Tokenizer qwen2_like = Tokenizer::from_json_text(llama3_json(v, false).dump());
    std::mt19937 rng(11);
    for (int trial = 0; trial < 2000; ++trial) {
        const std::string text = random_text(rng, trial % 60);
        REQUIRE_MESSAGE(llama3.encode(text, false) == v.naive_encode(text, true), "text: '", text, "'");
        REQUIRE_MESSAGE(qwen2_like.encode(text, false) == v.naive_encode(text, false), "text: '", text, "'");
        REQUIRE(llama3.decode(llama3.encode(text), true) == text);
    }
}

TEST_CASE("byte-level BPE (Qwen2 layout): NFC first, single digits, no BOS") {
    const ByteLevelVocab& v = small_byte_level_vocab();
    const Tokenizer t = Tokenizer::from_json_text(qwen2_json(v).dump());
    CHECK(t.encode("12345") == Ids{'1', '2', '3', '4', '5'});
    CHECK(t.encode("e\xCC\x81") == Ids{0xC3, 0xA9});  // e + combining acute composes to é (C3 A9)
    CHECK(t.encode("hello<|im_end|>") == Ids{v.vocab.at("hello"), 1002});
    CHECK(!t.bos_id().has_value());
    CHECK(t.decode(t.encode("\xE4\xB8\xAD\xE6\x96\x87 ok")) == "\xE4\xB8\xAD\xE6\x96\x87 ok");
    CHECK(t.encode("\xE4\xB8\xAD") == Ids{v.vocab.at(bl("\xE4\xB8\xAD"))});  // the merge of byte characters
    CHECK(t.decode({0xE4, 0xB8}) == "\xEF\xBF\xBD");  // an incomplete character decodes lossily
}

TEST_CASE("added tokens: lstrip, rstrip, single_word, normalized contents, longest match first") {
    const ByteLevelVocab& v = small_byte_level_vocab();
    json j = qwen2_json(v);
    json mask = added_token(1003, "<mask>");
    mask["lstrip"] = true;
    json end = added_token(1004, "<end>");
    end["rstrip"] = true;
    json word = added_token(1005, "cat", false);
    word["single_word"] = true, word["normalized"] = false;
    json accent = added_token(1006, "e\xCC\x81" "t", false);  // normalized = true: NFC makes it "ét"
    json longer = added_token(1007, "<mask>x");
    for (const json& a : {mask, end, word, accent, longer}) j["added_tokens"].push_back(a);
    const Tokenizer t = Tokenizer::from_json_text(j.dump());
    CHECK(t.encode("a <mask>") == Ids{'a', 1003});           // lstrip swallows the space before
    CHECK(t.encode("a  <end>  b") == Ids{'a', v.vocab.at(bl("  ")), 1004, 'b'});  // rstrip the spaces after
    CHECK(t.encode("cat dog") == Ids{1005, v.vocab.at(bl(" ")), 'd', 'o', 'g'});
    CHECK(t.encode("concat") == v.naive_encode("concat", false, 1));  // not a single word there
    CHECK(t.encode("\xC3\xA9t") == Ids{1006});               // the normalized content matches é + t
    CHECK(t.encode("<mask>x<mask>") == Ids{1007, 1003});     // leftmost, then longest
    CHECK(t.decode({1003, 1005}) == "<mask>cat");
    CHECK(t.decode({1003, 1005}, true) == "cat");             // cat is not special
}

TEST_CASE("added tokens: single_word's word characters are the regex crate's \\w (Alphabetic, M, Nd, Pc, Join_Control)") {
    // tokenizers/src/tokenizer/added_vocabulary.rs: ends_with_word / starts_with_word are the `regex`
    // crate's \w$ and ^\w, Unicode \w = [\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}].
    const ByteLevelVocab& v = small_byte_level_vocab();
    json j = qwen2_json(v);
    json word = added_token(1003, "cat", false);
    word["single_word"] = true, word["normalized"] = false;
    j["added_tokens"].push_back(word);
    const Tokenizer t = Tokenizer::from_json_text(j.dump());
    // '_' is Pc, a word character: "cat" is not a single word in "cat_x"; the text goes to the model.
    CHECK(t.encode("cat_x") == Ids{'c', 'a', 't', '_', 'x'});
    CHECK(t.encode("x_cat") == Ids{'x', '_', 'c', 'a', 't'});
    // U+00B2 (superscript two) is No, not \w: "cat" is a single word after it (the Qwen2 pattern
    // makes "\xC2\xB2" one \p{N} piece, its two byte tokens).
    CHECK(t.encode("\xC2\xB2" "cat") == Ids{0xC2, 0xB2, 1003});
    // U+200D (ZERO WIDTH JOINER) is Join_Control, a word character: no match.
    CHECK(t.encode("\xE2\x80\x8D" "cat") == v.naive_encode("\xE2\x80\x8D" "cat", false, 1));
    CHECK(t.encode("\xE2\x80\x8D" "cat") != Ids{0xE2, 0x80, 0x8D, 1003});
    CHECK(t.encode("a cat.") == Ids{'a', v.vocab.at(bl(" ")), 1003, '.'});
}

TEST_CASE("added tokens: ids as tokenizers assigns them, not the file's \"id\" fields") {
    // tokenizers/src/tokenizer/serialization.rs (visit_map) calls add_tokens with the tokens alone;
    // added_vocabulary.rs add_tokens: a content in the added or model vocabulary keeps that id, any
    // other takes next_id = model.get_vocab_size() (1000 entries here), + 1 per new token, in order;
    // an empty content is ignored.
    const ByteLevelVocab& v = small_byte_level_vocab();
    json j = llama3_json(v);
    j["added_tokens"].push_back(added_token(5000, "<|new|>"));  // the file says 5000; tokenizers gives 1003
    j["added_tokens"].push_back(added_token(7, "hello", false));  // in the model: its model id
    j["added_tokens"].push_back(added_token(1004, ""));          // skipped, not an error
    j["added_tokens"].push_back(added_token(6000, "<|two|>"));  // 1004
    const Tokenizer t = Tokenizer::from_json_text(j.dump());
    CHECK(t.encode("<|new|>", false) == Ids{1003});
    CHECK(t.encode("a<|two|>", false) == Ids{'a', 1004});
    CHECK(t.token_to_id("<|new|>") == 1003);
    CHECK(t.token_to_id("hello") == v.vocab.at("hello"));
    CHECK(t.encode("hello", false) == Ids{v.vocab.at("hello")});
    CHECK(t.decode({1003, 1004}) == "<|new|><|two|>");
    CHECK(t.vocab_size() == 1005);
}

TEST_CASE("SentencePiece-style BPE (LLaMA 2 layout): Prepend + Replace, byte fallback, fuse_unk, decoder") {
    const std::vector<std::string> pieces = {"▁", "H", "e", "l", "o", "w", "r", "d", "▁H", "ll", "▁He", "▁Hell", "▁Hello",
                                             "▁w", "or", "▁wor", "▁worl", "▁world"};
    const std::vector<std::pair<std::string, std::string>> merges = {
        {"▁", "H"}, {"l", "l"}, {"▁H", "e"}, {"▁He", "ll"}, {"▁Hell", "o"}, {"▁", "w"}, {"o", "r"}, {"▁w", "or"},
        {"▁wor", "l"}, {"▁worl", "d"}};
    const Tokenizer t = Tokenizer::from_json_text(llama2_json(pieces, merges).dump());
    const std::int32_t space = 259, H = 260, e = 261, l = 262, o = 263, ll = 268, sH = 267, Hello = 271, world = 276;
    CHECK(t.encode("Hello world") == Ids{1, Hello, world});
    CHECK(t.encode("Hello  world", false) == Ids{Hello, space, world});
    CHECK(t.encode(" Hello", false) == Ids{space, Hello});
    CHECK(t.encode("H\xC3\xBC", false) == Ids{sH, 3 + 0xC3, 3 + 0xBC});  // ü as its two <0xNN> bytes
    CHECK(t.encode("Hello</s>Hello", false) == Ids{Hello, 2, Hello});   // the legacy form prepends ▁ after </s> too
    CHECK(t.bos_id() == 1);
    for (const std::string text : {"Hello world", "Hello  world", " Hello", "H\xC3\xBC", "Hel\nlo\t!"})
        CHECK(t.decode(t.encode(text), true) == text);
    CHECK(t.decode({1, Hello, 2}) == "<s> Hello</s>");  // as HF: the ▁ becomes a space
    CHECK(t.decode({3 + 0xC3}) == "\xEF\xBF\xBD");  // a lone byte that is no character

    const Tokenizer no_fallback = Tokenizer::from_json_text(llama2_json(pieces, merges, true, false).dump());
    CHECK(no_fallback.encode("H\xE4\xB8\xAD\xE6\x96\x87", false) == Ids{sH, 0});       // fused into one <unk>
    CHECK(no_fallback.encode("H\xE4\xB8\xAD" "e\xE6\x96\x87", false) == Ids{sH, 0, e, 0});

    // The newer Metaspace(prepend_scheme "first") form: the same ids, but no ▁ after a special token.
    const Tokenizer metaspace = Tokenizer::from_json_text(llama2_json(pieces, merges, false).dump());
    CHECK(metaspace.encode("Hello world") == Ids{1, Hello, world});
    CHECK(metaspace.encode("Hello</s>Hello", false) == Ids{Hello, 2, H, e, ll, o});
    (void)l;
}

TEST_CASE("tokenizer_config.json: BOS/EOS names, LlamaTokenizerFast's add_bos_token / add_eos_token") {
    const auto& dir = test::scratch_dir("text") / "llama2";
    const std::vector<std::string> pieces = {"▁", "a", "▁a"};
    write_file(dir, "tokenizer.json", llama2_json(pieces, {{"▁", "a"}}).dump());
    write_file(dir, "tokenizer_config.json",
               R"({"tokenizer_class": "LlamaTokenizer", "add_bos_token": false, "add_eos_token": true,
                   "bos_token": {"__type": "AddedToken", "content": "<s>"}, "eos_token": "</s>"})");
    const Tokenizer t = Tokenizer::from_folder(dir.string());
    CHECK(t.encode("a") == Ids{261, 2});
    CHECK(t.bos_id() == 1);
    CHECK(t.eos_id() == 2);
    const Tokenizer file_only = Tokenizer::from_json((dir / "tokenizer.json").string());
    CHECK(file_only.encode("a") == Ids{1, 261});  // the Rust library: the file's template

    const auto& dir3 = test::scratch_dir("text") / "llama3";
    write_file(dir3, "tokenizer.json", llama3_json(small_byte_level_vocab()).dump());
    write_file(dir3, "tokenizer_config.json", R"({"tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"})");
    const Tokenizer t3 = Tokenizer::from_folder(dir3.string());
    CHECK(t3.bos_id() == 1000);
    CHECK(t3.eos_id() == 1002);
    CHECK(t3.encode("hello").front() == 1000);
}

TEST_CASE("errors: every bad file or input is refused, naming what is wrong") {
    const ByteLevelVocab& v = small_byte_level_vocab();
    const json good = llama3_json(v);
    const auto refused = [](const json& j, const std::string& words) {
        CHECK_THROWS_WITH_AS(Tokenizer::from_json_text(j.dump()), doctest::Contains(words.c_str()), loranull::error);
    };
    CHECK_THROWS_WITH_AS(Tokenizer::from_json_text("{\"model\": "), doctest::Contains("not valid JSON"), loranull::error);
    json j = good;
    j["model"]["type"] = "WordPiece";
    refused(j, "model type WordPiece is not supported");
    j = good, j["model"]["type"] = "Unigram";
    refused(j, "model type Unigram");
    j = good, j["model"]["merges"][0] = "h";
    refused(j, "model.merges[0] 'h' is not two tokens");
    j = good, j["model"]["merges"][1] = "l l l";
    refused(j, "model.merges[1]");
    j = good, j["model"]["merges"][2] = "he qq";
    refused(j, "token 'qq' is not in the vocabulary");
    j = good, j["model"]["merges"].push_back("x a");
    refused(j, "the merged token 'xa' is not in the vocabulary");
    j = good, j["model"]["merges"][0] = json::array({"h"});
    refused(j, "must be \"a b\" or [\"a\", \"b\"]");
    j = good, j["model"]["dropout"] = 0.1;
    refused(j, "dropout 0.1 is not supported");
    j = good, j["model"]["vocab"]["dup"] = 5;
    refused(j, "id 5 is given to both");
    j = good, j["normalizer"] = {{"type", "Lowercase"}};
    refused(j, "normalizer type Lowercase is not supported");
    j = good, j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}, {{"type", "BertNormalizer"}}}}};
    refused(j, "normalizer.normalizers[1]: normalizer type BertNormalizer");
    j = good, j["pre_tokenizer"]["pretokenizers"][1]["type"] = "Whitespace";
    refused(j, "pre_tokenizer.pretokenizers[1]: pre_tokenizer type Whitespace");
    j = good, j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Regex", "(unclosed"}};
    refused(j, "cannot compile the regex '(unclosed'");
    j = good, j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Sideways";
    refused(j, "behavior Sideways is unknown");
    j = good, j["decoder"] = {{"type", "WordPiece"}};
    refused(j, "decoder type WordPiece");
    j = good, j["post_processor"] = {{"type", "BertProcessing"}};
    refused(j, "post_processor type BertProcessing");
    j = good, j["truncation"] = {{"max_length", 8}};
    refused(j, "truncation is set");
    j = good, j.erase("model");
    refused(j, "the tokenizer has no model");
    j = good, j["model"]["vocab"] = json::array();
    refused(j, "model.vocab must be an object");
    j = good, j["added_tokens"][0]["content"] = 5;
    refused(j, "added_tokens[0].content must be a string");

    const Tokenizer t = Tokenizer::from_json_text(good.dump());
    CHECK_THROWS_WITH_AS(t.encode("ab\xFF"), doctest::Contains("not valid UTF-8 (bad byte 0xff at offset 2)"), loranull::error);
    CHECK_THROWS_WITH_AS(t.decode({5000}), doctest::Contains("ids[0] = 5000 is not a token"), loranull::error);
    const auto& dir = test::scratch_dir("text") / "sentencepiece_only";
    write_file(dir, "tokenizer.model", "not read");
    CHECK_THROWS_WITH_AS(Tokenizer::from_folder(dir.string()), doctest::Contains("only tokenizer.model"), loranull::error);
    CHECK_THROWS_WITH_AS(Tokenizer::from_folder((dir / "missing").string()), doctest::Contains("is not a folder"), loranull::error);
    CHECK_THROWS_WITH_AS(Tokenizer::from_json((dir / "none.json").string()), doctest::Contains("cannot open"), loranull::error);
    write_file(dir, "tokenizer.json", good.dump());
    write_file(dir, "tokenizer_config.json", R"({"bos_token": "<nope>"})");
    CHECK_THROWS_WITH_AS(Tokenizer::from_folder(dir.string()), doctest::Contains("bos_token '<nope>' is not a token"),
                         loranull::error);
}
