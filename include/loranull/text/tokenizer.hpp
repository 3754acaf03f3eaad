#pragma once
// Tokenizer: a Hugging Face tokenizer.json (model BPE) computing the ids that
// the Rust `tokenizers` library computes, for byte-level BPE (LLaMA 3.x,
// Qwen2) and SentencePiece-style BPE with byte fallback (LLaMA 2, Mistral):
//
//   text -> added tokens split off (raw text) -> each other piece normalized
//        -> added tokens with normalized = true split off -> pre-tokenized
//        -> BPE per piece -> post-processor template (add_special_tokens)
//
// from_json(file) is the Rust library's behaviour, file alone. from_folder(dir)
// also reads tokenizer_config.json, as transformers' AutoTokenizer does: BOS
// and EOS names, and for LlamaTokenizer(Fast) the template rebuilt from
// add_bos_token / add_eos_token. docs/tokenizers.md has every supported field.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <loranull/text/added_tokens.hpp>
#include <loranull/text/bpe.hpp>
#include <loranull/text/decoder.hpp>
#include <loranull/text/json_fields.hpp>
#include <loranull/text/normalizer.hpp>
#include <loranull/text/post_processor.hpp>
#include <loranull/text/pre_tokenizer.hpp>
#include <loranull/text/utf8.hpp>

namespace loranull::text {

class Tokenizer {
public:
    /// tokenizer.json at `path`.
    static Tokenizer from_json(const std::string& path) {
        return from_parsed(read_json_file(path, "tokenizer file"));
    }

    /// The text of a tokenizer.json (tests, embedded tokenizers).
    static Tokenizer from_json_text(std::string_view json_text) {
        try {
            return from_parsed(Json::parse(json_text));
        } catch (const Json::exception& e) {
            fail(json_where, "the tokenizer text is not valid JSON: ", e.what());
        }
    }

    /// An HF model folder: tokenizer.json, and tokenizer_config.json when present.
    static Tokenizer from_folder(const std::string& dir) {
        namespace fs = std::filesystem;
        require(fs::is_directory(dir), "text::Tokenizer::from_folder", dir, " is not a folder");
        const fs::path json = fs::path(dir) / "tokenizer.json";
        if (!fs::exists(json)) {
            const bool sentencepiece = fs::exists(fs::path(dir) / "tokenizer.model");
            fail("text::Tokenizer::from_folder", dir, " has no tokenizer.json",
                 sentencepiece ? " (only tokenizer.model, a SentencePiece file, which loranull does not read: convert it "
                                 "with transformers, AutoTokenizer.from_pretrained(dir).save_pretrained(dir))"
                               : "");
        }
        Tokenizer t = from_json(json.string());
        const fs::path config = fs::path(dir) / "tokenizer_config.json";
        if (fs::exists(config)) t.apply_config(read_json_file(config.string(), "tokenizer config"));
        return t;
    }

    /// The ids of `text` (valid UTF-8); add_special_tokens applies the template (BOS, ...).
    std::vector<std::int32_t> encode(std::string_view text, bool add_special_tokens = true) const {
        require_utf8(text, "text::Tokenizer::encode", "text");
        std::vector<std::int32_t> ids;
        ids.reserve(text.size() / 3 + 4);
        std::vector<Piece> pieces;
        for (Segment& segment : added_.extract_and_normalize(text, normalizer_)) {
            if (segment.id) {
                ids.push_back(*segment.id);
                continue;
            }
            pieces.assign(1, Piece{std::move(segment.text), segment.at_origin});
            pre_tokenizer_.pre_tokenize(pieces);
            for (const Piece& p : pieces) model_.tokenize(p.text, ids);
        }
        if (add_special_tokens) template_.apply(ids);
        return ids;
    }

    /// The text of `ids` (every id must exist); skip_special_tokens drops special added tokens.
    std::string decode(const std::vector<std::int32_t>& ids, bool skip_special_tokens = false) const {
        std::vector<std::string> tokens;
        tokens.reserve(ids.size());
        for (std::size_t i = 0; i < ids.size(); ++i) {
            if (const AddedToken* added = added_.by_id(ids[i])) {
                if (!(skip_special_tokens && added->special)) tokens.push_back(added->content);
                continue;
            }
            const std::string* token = model_.id_to_token(ids[i]);
            require(token != nullptr, "text::Tokenizer::decode", "ids[", i, "] = ", ids[i],
                    " is not a token of this vocabulary (ids are 0 .. ", vocab_size() - 1, ")");
            tokens.push_back(*token);
        }
        return decoder_.decode(std::move(tokens));
    }

    std::optional<std::int32_t> bos_id() const { return bos_; }
    std::optional<std::int32_t> eos_id() const { return eos_; }
    /// One past the largest id (model vocabulary and added tokens): the embedding's row count at least.
    std::int32_t vocab_size() const { return std::max(model_.id_limit(), added_.id_limit()); }

    std::optional<std::int32_t> token_to_id(std::string_view token) const {
        if (const auto id = added_.token_to_id(token)) return id;
        return model_.token_to_id(token);
    }
    std::optional<std::string> id_to_token(std::int32_t id) const {
        if (const AddedToken* added = added_.by_id(id)) return added->content;
        if (const std::string* token = model_.id_to_token(id)) return *token;
        return std::nullopt;
    }

private:
    static Tokenizer from_parsed(const Json& file) {
        require(file.is_object(), json_where, "a tokenizer.json must be a JSON object, got ", file.type_name());
        for (const char* unsupported : {"truncation", "padding"})
            if (const Json& v = member(file, unsupported, ""); !v.is_null())
                fail(json_where, unsupported, " is set (", v.dump(), "); truncation and padding are not supported: set them to null");
        Tokenizer t;
        t.normalizer_ = Normalizer::from_json(member(file, "normalizer", ""));
        t.pre_tokenizer_ = PreTokenizer::from_json(member(file, "pre_tokenizer", ""));
        const Json& model = member(file, "model", "");
        require(!model.is_null(), json_where, "the tokenizer has no model");
        t.model_ = BpeModel::from_json(model);
        t.added_ = AddedVocabulary::from_json(member(file, "added_tokens", ""), t.model_, t.normalizer_);
        t.template_ = Template::from_json(member(file, "post_processor", ""));
        t.decoder_ = Decoder::from_json(member(file, "decoder", ""));
        // Without a config: BOS is what the template puts before $A, EOS what it puts after.
        if (t.template_.before.size() == 1) t.bos_ = t.template_.before.front();
        if (t.template_.after.size() == 1) t.eos_ = t.template_.after.front();
        return t;
    }

    /// tokenizer_config.json: bos_token / eos_token ("name", {"content": "name"} or null)
    /// and, for LlamaTokenizer(Fast), the template transformers rebuilds from add_bos_token / add_eos_token.
    void apply_config(const Json& config) {
        const std::string path = "tokenizer_config.json";
        require(config.is_object(), json_where, path, " must be a JSON object");
        const auto id_of_field = [&](const char* key) -> std::optional<std::int32_t> {
            const Json& v = member(config, key, path);
            if (v.is_null()) return std::nullopt;
            const std::string name = v.is_object() ? string_field(v, "content", path + "." + key)
                                                   : string_field(config, key, path);
            const auto id = token_to_id(name);
            require(id.has_value(), json_where, path, ".", key, " '", name, "' is not a token of tokenizer.json");
            return id;
        };
        if (config.contains("bos_token")) bos_ = id_of_field("bos_token");
        if (config.contains("eos_token")) eos_ = id_of_field("eos_token");
        const Json& cls = member(config, "tokenizer_class", path);
        const bool llama = cls.is_string() && (cls == "LlamaTokenizer" || cls == "LlamaTokenizerFast");
        if (!llama) return;
        const bool add_bos = bool_field(config, "add_bos_token", path, true);
        const bool add_eos = bool_field(config, "add_eos_token", path, false);
        require(!(add_bos && !bos_) && !(add_eos && !eos_), json_where, path,
                ": add_bos_token / add_eos_token is true but the token is not named");
        template_.before.clear(), template_.after.clear();
        if (add_bos) template_.before.push_back(*bos_);
        if (add_eos) template_.after.push_back(*eos_);
    }

    Normalizer normalizer_;
    PreTokenizer pre_tokenizer_;
    BpeModel model_;
    AddedVocabulary added_;
    Template template_;
    Decoder decoder_;
    std::optional<std::int32_t> bos_, eos_;
};

}  // namespace loranull::text
