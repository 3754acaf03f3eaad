#pragma once
// The BPE model of tokenizer.json, as tokenizers' models/bpe computes it:
//
//   1. ignore_merges: a piece that is itself in the vocabulary is one token
//      (LLaMA 3), before any merge is looked at;
//   2. one symbol per character; a character not in the vocabulary becomes
//      its UTF-8 bytes as <0xNN> tokens (byte_fallback, when all of them exist),
//      else unk_token (consecutive unknowns fused into one with fuse_unk),
//      else it is dropped (no unk_token: tokenizers drops it silently);
//   3. merges: repeatedly the adjacent pair of lowest rank, leftmost first,
//      becomes its merged token (a heap over the pairs, as tokenizers' Word).
//
// continuing_subword_prefix and end_of_word_suffix are applied as tokenizers
// does; dropout must be null or 0 (a random model has no exact answer).

#include <cstdint>
#include <cstdio>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <loranull/text/json_fields.hpp>
#include <loranull/text/utf8.hpp>

namespace loranull::text {

/// Hash for heterogeneous lookup (string_view into a map of std::string).
struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using Vocabulary = std::unordered_map<std::string, std::int32_t, StringHash, std::equal_to<>>;

/// The <0xNN> token of a byte (tokenizers: format!("<{b:#04X}>")).
inline std::string byte_fallback_token(unsigned char byte) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", byte);
    return name;
}

class BpeModel {
public:
    struct Merge {
        std::uint32_t rank = 0;
        std::int32_t merged = 0;
    };

    /// From tokenizer.json's "model" (type BPE).
    static BpeModel from_json(const Json& spec, const std::string& path = "model") {
        const std::string type = type_of(spec, path);
        require(type == "BPE", json_where, path, ": model type ", type, " is not supported (only BPE)");
        BpeModel m;
        m.read_vocabulary(member(spec, "vocab", path), path + ".vocab");
        const Json& dropout = member(spec, "dropout", path);
        require(dropout.is_null() || (dropout.is_number() && dropout.get<double>() == 0.0), json_where, path,
                ".dropout ", dropout.dump(), " is not supported (random merges; only null or 0)");
        if (const Json& unk = member(spec, "unk_token", path); !unk.is_null()) m.unk_token_ = string_field(spec, "unk_token", path);
        if (!member(spec, "continuing_subword_prefix", path).is_null())
            m.prefix_ = string_field(spec, "continuing_subword_prefix", path);
        if (!member(spec, "end_of_word_suffix", path).is_null())
            m.suffix_ = string_field(spec, "end_of_word_suffix", path);
        m.fuse_unk_ = bool_field(spec, "fuse_unk", path, false);
        m.byte_fallback_ = bool_field(spec, "byte_fallback", path, false);
        m.ignore_merges_ = bool_field(spec, "ignore_merges", path, false);
        m.read_merges(member(spec, "merges", path), path + ".merges");
        return m;
    }

    std::optional<std::int32_t> token_to_id(std::string_view token) const {
        const auto it = vocab_.find(token);
        return it == vocab_.end() ? std::nullopt : std::optional<std::int32_t>(it->second);
    }
    /// The token of id, or nullptr when the vocabulary has no such id.
    const std::string* id_to_token(std::int32_t id) const {
        return id >= 0 && static_cast<std::size_t>(id) < tokens_.size() && has_id_[id] ? &tokens_[id] : nullptr;
    }
    std::int32_t id_limit() const { return static_cast<std::int32_t>(tokens_.size()); }  // largest id + 1
    std::size_t size() const { return vocab_.size(); }
    const Merge* merge_of(std::int32_t left, std::int32_t right) const {
        const auto it = merges_.find(pair_key(left, right));
        return it == merges_.end() ? nullptr : &it->second;
    }

    /// Appends the ids of one pre-tokenized piece.
    void tokenize(std::string_view piece, std::vector<std::int32_t>& out) const {
        if (piece.empty()) return;
        if (ignore_merges_)
            if (const auto whole = vocab_.find(piece); whole != vocab_.end()) return out.push_back(whole->second);
        std::vector<Symbol> word = initial_symbols(piece);
        merge_all(word);
        for (const Symbol& s : word)
            if (s.length > 0) out.push_back(s.id);
    }

private:
    struct Symbol {
        std::int32_t id = 0;
        std::int32_t previous = -1, next = -1;
        std::size_t length = 0;  // bytes of the piece it covers; 0 once merged into its left neighbour
    };

    static std::uint64_t pair_key(std::int32_t a, std::int32_t b) {
        return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b);
    }

    void read_vocabulary(const Json& vocab, const std::string& path) {
        require(vocab.is_object(), json_where, path, " must be an object of token: id, got ", vocab.type_name());
        vocab_.reserve(vocab.size());
        for (const auto& [token, id_json] : vocab.items()) {
            const std::int32_t id = id_value(id_json, path + "[\"" + token + "\"]");
            require_utf8(token, json_where, path + " token");
            vocab_.emplace(token, id);
            if (static_cast<std::size_t>(id) >= tokens_.size()) tokens_.resize(id + 1), has_id_.resize(id + 1);
            require(!has_id_[id], json_where, path, ": id ", id, " is given to both '", tokens_[id], "' and '", token, "'");
            tokens_[id] = token;
            has_id_[id] = true;
        }
    }

    void read_merges(const Json& merges, const std::string& path) {
        require(merges.is_array(), json_where, path, " must be an array, got ", merges.type_name());
        merges_.reserve(merges.size());
        std::uint32_t rank = 0;
        for (std::size_t i = 0; i < merges.size(); ++i) {
            const Json& m = merges[i];
            const std::string where = path + "[" + std::to_string(i) + "]";
            std::string left, right;
            if (m.is_string()) {  // "a b" (older files): exactly one space
                const std::string line = m.get<std::string>();
                if (line.rfind("#version", 0) == 0) continue;
                const std::size_t space = line.find(' ');
                require(space != std::string::npos && line.find(' ', space + 1) == std::string::npos, json_where,
                        where, " '", line, "' is not two tokens separated by one space");
                left = line.substr(0, space), right = line.substr(space + 1);
            } else {  // ["a", "b"] (newer files)
                require(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(), json_where, where,
                        " must be \"a b\" or [\"a\", \"b\"], got ", m.dump());
                left = m[0].get<std::string>(), right = m[1].get<std::string>();
            }
            const auto a = token_to_id(left), b = token_to_id(right);
            require(a.has_value(), json_where, where, ": token '", left, "' is not in the vocabulary");
            require(b.has_value(), json_where, where, ": token '", right, "' is not in the vocabulary");
            require(right.rfind(prefix_, 0) == 0, json_where, where, ": '", right,
                    "' lacks the continuing_subword_prefix '", prefix_, "'");
            const std::string merged = left + right.substr(prefix_.size());
            const auto id = token_to_id(merged);
            require(id.has_value(), json_where, where, ": the merged token '", merged, "' is not in the vocabulary");
            merges_[pair_key(*a, *b)] = Merge{rank++, *id};  // a repeated pair keeps its last rank, as tokenizers does
        }
    }

    std::int32_t unk_id() const {
        const auto id = token_to_id(unk_token_);
        require(id.has_value(), "text::BpeModel::tokenize", "unk_token '", unk_token_, "' is not in the vocabulary");
        return *id;
    }

    std::vector<Symbol> initial_symbols(std::string_view piece) const {
        std::vector<Symbol> word;
        word.reserve(piece.size());
        const auto add = [&](std::int32_t id, std::size_t length) { word.push_back({id, -1, -1, length}); };
        std::size_t pending_unk = 0;  // bytes of unknown characters not yet added as unk_token
        std::string decorated;
        for (std::size_t i = 0; i < piece.size();) {
            const std::size_t n = code_point_length(piece[i]);
            std::string_view character = piece.substr(i, n);
            if (!prefix_.empty() || !suffix_.empty()) {
                decorated = (i > 0 ? prefix_ : std::string()) + std::string(character) +
                            (i + n == piece.size() ? suffix_ : std::string());
                character = decorated;
            }
            i += n;
            if (const auto it = vocab_.find(character); it != vocab_.end()) {
                if (pending_unk) add(unk_id(), pending_unk), pending_unk = 0;
                add(it->second, n);
                continue;
            }
            if (byte_fallback_ && add_byte_tokens(character, word)) continue;  // (a pending unk stays pending, as in tokenizers)
            if (unk_token_.empty()) continue;
            if (pending_unk && !fuse_unk_) add(unk_id(), pending_unk), pending_unk = 0;
            if (!pending_unk) unk_id();  // tokenizers fails here when unk_token is not in the vocabulary
            pending_unk += n;
        }
        if (pending_unk) add(unk_id(), pending_unk);
        for (std::size_t k = 0; k < word.size(); ++k) {
            word[k].previous = static_cast<std::int32_t>(k) - 1;
            word[k].next = k + 1 < word.size() ? static_cast<std::int32_t>(k + 1) : -1;
        }
        return word;
    }

    /// The <0xNN> tokens of every byte of `character`, when all exist.
    bool add_byte_tokens(std::string_view character, std::vector<Symbol>& word) const {
        std::vector<std::int32_t> ids;
        for (const char c : character) {
            const auto id = token_to_id(byte_fallback_token(static_cast<unsigned char>(c)));
            if (!id) return false;
            ids.push_back(*id);
        }
        for (const std::int32_t id : ids) word.push_back({id, -1, -1, 1});
        return true;
    }

    /// Lowest rank first, then leftmost: tokenizers' Word::merge_all without dropout.
    void merge_all(std::vector<Symbol>& word) const {
        struct Candidate {
            std::uint32_t rank;
            std::int32_t position, merged;
            bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : position > o.position; }
        };
        std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
        const auto consider = [&](std::int32_t left) {
            const std::int32_t right = word[left].next;
            if (right < 0) return;
            if (const Merge* m = merge_of(word[left].id, word[right].id)) queue.push({m->rank, left, m->merged});
        };
        for (std::size_t k = 0; k + 1 < word.size(); ++k) consider(static_cast<std::int32_t>(k));
        while (!queue.empty()) {
            const Candidate top = queue.top();
            queue.pop();
            Symbol& left = word[top.position];
            if (left.length == 0 || left.next < 0) continue;  // merged away, or no right neighbour any more
            Symbol& right = word[left.next];
            const Merge* still = merge_of(left.id, right.id);
            if (!still || still->merged != top.merged) continue;  // the pair changed since it was queued
            left.id = top.merged;
            left.length += right.length;
            right.length = 0;
            left.next = right.next;
            if (left.next >= 0) word[left.next].previous = top.position;
            if (left.previous >= 0) consider(left.previous);
            consider(top.position);
        }
    }

    Vocabulary vocab_;
    std::vector<std::string> tokens_;  // by id
    std::vector<bool> has_id_;
    std::unordered_map<std::uint64_t, Merge> merges_;
    std::string unk_token_, prefix_, suffix_;
    bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
};

}  // namespace loranull::text
