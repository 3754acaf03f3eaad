#pragma once
// Small tokenizer.json files built in the tests, shaped like the real ones:
// LLaMA 3 (byte-level BPE, ignore_merges, <|begin_of_text|>), Qwen2 (NFC,
// single digits, no BOS) and LLaMA 2 (SentencePiece-style BPE with byte
// fallback, in both the legacy normalizer form and the Metaspace form). The
// expected ids come from the naive pipeline below (loranull/text/reference.hpp),
// which shares no code with the tokenizer's fast path.

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <loranull/text/pre_tokenizer.hpp>
#include <loranull/text/reference.hpp>

namespace test_text {

using nlohmann::json;
using Ids = std::vector<std::int32_t>;
namespace ref = loranull::text::reference;

inline const char* llama3_pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline const char* qwen2_pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

/// Plain text as GPT-2's byte characters (" w" -> "Ġw").
inline std::string bl(const std::string& plain) { return loranull::text::ByteLevelTable::get().encode(plain); }

/// A byte-level vocabulary: the 256 byte characters (id = byte), then one
/// token per merge in order (written in plain text, converted), then `extra`
/// whole tokens that no merge reaches, then fillers up to id 999.
struct ByteLevelVocab {
    std::map<std::string, std::int32_t> vocab;
    std::vector<std::pair<std::string, std::string>> merges;  // byte-level strings
    std::map<std::pair<std::string, std::string>, std::size_t> rank;

    ByteLevelVocab(const std::vector<std::pair<std::string, std::string>>& plain_merges,
                   const std::vector<std::string>& extra = {}) {
        for (int b = 0; b < 256; ++b) vocab[bl(std::string(1, static_cast<char>(b)))] = b;
        for (const auto& [a, b] : plain_merges) {
            merges.emplace_back(bl(a), bl(b));
            rank[{bl(a), bl(b)}] = rank.size();
            vocab.emplace(bl(a + b), static_cast<std::int32_t>(vocab.size()));
        }
        for (const std::string& e : extra) vocab.emplace(bl(e), static_cast<std::int32_t>(vocab.size()));
        // Fillers up to id 999, so that the added tokens of the files below (1000 on) get the ids
        // tokenizers gives them: the model's vocabulary size on (AddedVocabulary::add_tokens).
        for (int k = 0; vocab.size() < 1000; ++k) vocab.emplace(bl("<unused_" + std::to_string(k) + ">"), static_cast<std::int32_t>(vocab.size()));
    }

    /// The naive pipeline: hand-written pattern scanner, bytes as characters,
    /// the whole piece when ignore_merges finds it, else BPE by repeated scan.
    Ids naive_encode(const std::string& text, bool ignore_merges, int digits_at_most = 3) const {
        Ids ids;
        for (const std::string& piece : ref::scan_llama3_pattern(text, digits_at_most)) {
            const std::string chars = bl(piece);
            if (ignore_merges && vocab.count(chars)) {
                ids.push_back(vocab.at(chars));
                continue;
            }
            for (const std::string& s : ref::naive_bpe(ref::characters_of(chars), rank)) ids.push_back(vocab.at(s));
        }
        return ids;
    }
};

inline json added_token(std::int32_t id, const std::string& content, bool special = true) {
    return {{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false},
            {"rstrip", false}, {"normalized", !special}, {"special", special}};
}

/// LLaMA 3's layout: Split(pattern, Isolated) + ByteLevel(no regex), BPE with
/// ignore_merges, Sequence[ByteLevel, Template(<|begin_of_text|> $A)].
/// merges_as_pairs: the newer [a, b] form instead of "a b".
inline json llama3_json(const ByteLevelVocab& v, bool ignore_merges = true, bool merges_as_pairs = false) {
    json merges = json::array();
    for (const auto& [a, b] : v.merges) merges.push_back(merges_as_pairs ? json::array({a, b}) : json(a + " " + b));
    const std::int32_t bos = 1000, eos = 1001;
    return {
        {"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr},
        {"added_tokens", {added_token(bos, "<|begin_of_text|>"), added_token(eos, "<|end_of_text|>"),
                          added_token(1002, "<|eot_id|>")}},
        {"normalizer", nullptr},
        {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", {
            {{"type", "Split"}, {"pattern", {{"Regex", llama3_pattern}}}, {"behavior", "Isolated"}, {"invert", false}},
            {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}}},
        {"post_processor", {{"type", "Sequence"}, {"processors", {
            {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}},
            {{"type", "TemplateProcessing"},
             {"single", {{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
                         {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
             {"pair", json::array()},
             {"special_tokens", {{"<|begin_of_text|>", {{"id", "<|begin_of_text|>"}, {"ids", {bos}},
                                                        {"tokens", {"<|begin_of_text|>"}}}}}}}}}}},
        {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
        {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
                   {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
                   {"ignore_merges", ignore_merges}, {"vocab", v.vocab}, {"merges", merges}}}};
}

/// Qwen2's layout: NFC, single digits, no ignore_merges, no BOS.
inline json qwen2_json(const ByteLevelVocab& v) {
    json j = llama3_json(v, false);
    j["normalizer"] = {{"type", "NFC"}};
    j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = qwen2_pattern;
    j["post_processor"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
    j["added_tokens"] = {added_token(1000, "<|endoftext|>"), added_token(1001, "<|im_start|>"), added_token(1002, "<|im_end|>")};
    return j;
}

/// LLaMA 2's layout: <unk> <s> </s>, the 256 <0xNN> tokens, then `pieces`
/// (ids 259 on); merges as given. legacy: Prepend + Replace normalizer; else
/// the newer Metaspace(prepend_scheme first) pre-tokenizer.
inline json llama2_json(const std::vector<std::string>& pieces, const std::vector<std::pair<std::string, std::string>>& merges,
                        bool legacy = true, bool byte_fallback = true) {
    json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
    char name[8];
    for (int b = 0; b < 256; ++b) std::snprintf(name, sizeof name, "<0x%02X>", b), vocab[name] = 3 + b;
    for (const std::string& p : pieces) vocab[p] = static_cast<std::int32_t>(vocab.size());
    json merge_list = json::array();
    for (const auto& [a, b] : merges) merge_list.push_back(a + " " + b);
    json j = {
        {"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr},
        {"added_tokens", {added_token(0, "<unk>"), added_token(1, "<s>"), added_token(2, "</s>")}},
        {"normalizer", {{"type", "Sequence"}, {"normalizers", {{{"type", "Prepend"}, {"prepend", "▁"}},
            {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "▁"}}}}}},
        {"pre_tokenizer", nullptr},
        {"post_processor", {{"type", "TemplateProcessing"},
            {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
            {"pair", json::array()},
            {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
        {"decoder", {{"type", "Sequence"}, {"decoders", {
            {{"type", "Replace"}, {"pattern", {{"String", "▁"}}}, {"content", " "}},
            {{"type", "ByteFallback"}}, {{"type", "Fuse"}},
            {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
        {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", "<unk>"}, {"continuing_subword_prefix", nullptr},
                   {"end_of_word_suffix", nullptr}, {"fuse_unk", true}, {"byte_fallback", byte_fallback},
                   {"vocab", vocab}, {"merges", merge_list}}}};
    if (!legacy) {
        j["normalizer"] = nullptr;
        j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "▁"}, {"prepend_scheme", "first"}, {"split", false}};
    }
    return j;
}

/// Writes `content` to dir/name (dir created).
inline std::filesystem::path write_file(const std::filesystem::path& dir, const std::string& name, const std::string& content) {
    std::filesystem::create_directories(dir);
    std::ofstream(dir / name, std::ios::binary) << content;
    return dir / name;
}

}  // namespace test_text
