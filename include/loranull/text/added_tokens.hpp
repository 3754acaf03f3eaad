#pragma once
// tokenizer.json's "added_tokens" (special tokens such as <s> or
// <|begin_of_text|>, and other added words), matched as tokenizers'
// AddedVocabulary matches them:
//
//   1. tokens with normalized = false (all special tokens in real files) are
//      found in the raw text; the text between them is normalized piece by piece;
//   2. tokens with normalized = true are found in those normalized pieces,
//      their own content normalized by the same normalizer;
//   3. matching is leftmost, then longest (aho-corasick LeftmostLongest);
//      single_word keeps a match only between neighbours that are not \w
//      (the regex crate's Unicode \w: letters, marks, Nd, Nl, '_', ZWJ/ZWNJ);
//      lstrip / rstrip make the token swallow the white space before / after it.

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <loranull/text/bpe.hpp>
#include <loranull/text/json_fields.hpp>
#include <loranull/text/normalizer.hpp>
#include <loranull/text/utf8.hpp>

namespace loranull::text {

struct AddedToken {
    std::string content;
    std::int32_t id = 0;
    bool special = false, normalized = true, lstrip = false, rstrip = false, single_word = false;
};

/// A piece of the input: either an added token (id set) or text for the model.
struct Segment {
    std::string text;
    std::optional<std::int32_t> id;
    bool at_origin = false;  // starts at byte 0 of the input
};

/// Finds a set of strings in text: leftmost first, longest at that position.
class LeftmostLongestMatcher {
public:
    void add(std::string pattern, std::size_t token) {
        if (pattern.empty()) return;  // an empty pattern never matches (as in aho-corasick over tokens)
        auto& bucket = by_first_byte_[static_cast<unsigned char>(pattern[0])];
        bucket.push_back({std::move(pattern), token});
        std::stable_sort(bucket.begin(), bucket.end(),
                         [](const Entry& a, const Entry& b) { return a.pattern.size() > b.pattern.size(); });
    }
    struct Match {
        std::size_t begin, end, token;
    };
    /// The first match starting at or after `from`.
    std::optional<Match> find(std::string_view text, std::size_t from) const {
        for (std::size_t i = from; i < text.size(); ++i)
            for (const Entry& e : by_first_byte_[static_cast<unsigned char>(text[i])])
                if (text.compare(i, e.pattern.size(), e.pattern) == 0) return Match{i, i + e.pattern.size(), e.token};
        return std::nullopt;
    }

private:
    struct Entry {
        std::string pattern;
        std::size_t token;
    };
    std::array<std::vector<Entry>, 256> by_first_byte_;
};

class AddedVocabulary {
public:
    /// From tokenizer.json's "added_tokens", ids as tokenizers' AddedVocabulary::add_tokens
    /// gives them (serialization.rs adds the tokens and ignores the file's "id" fields):
    /// a content already added or in the model vocabulary keeps that id; any other
    /// takes the next id from the model's vocabulary size (its number of entries) on,
    /// in file order. An empty content is skipped, as there.
    static AddedVocabulary from_json(const Json& list, const BpeModel& model, const Normalizer& normalizer) {
        AddedVocabulary v;
        if (list.is_null()) return v;
        require(list.is_array(), json_where, "added_tokens must be an array, got ", list.type_name());
        auto next_id = static_cast<std::int32_t>(model.size());
        for (std::size_t i = 0; i < list.size(); ++i) {
            const std::string path = "added_tokens[" + std::to_string(i) + "]";
            const Json& t = list[i];
            AddedToken token;
            token.content = string_field(t, "content", path);
            if (token.content.empty()) continue;
            require_utf8(token.content, json_where, path + ".content");
            id_value(member(t, "id", path), path + ".id");  // read (must be an id), not used: as tokenizers
            token.special = bool_field(t, "special", path, false);
            token.normalized = bool_field(t, "normalized", path, !token.special);
            token.lstrip = bool_field(t, "lstrip", path, false);
            token.rstrip = bool_field(t, "rstrip", path, false);
            token.single_word = bool_field(t, "single_word", path, false);
            if (const auto known = v.token_to_id(token.content)) token.id = *known;
            else if (const auto in_model = model.token_to_id(token.content)) token.id = *in_model;
            else token.id = next_id++;
            v.add(std::move(token));
        }
        v.build_matchers(normalizer);
        return v;
    }

    std::optional<std::int32_t> token_to_id(std::string_view content) const {
        for (const AddedToken& t : tokens_)
            if (t.content == content) return t.id;
        return std::nullopt;
    }
    const AddedToken* by_id(std::int32_t id) const {
        const auto it = index_of_id_.find(id);
        return it == index_of_id_.end() ? nullptr : &tokens_[it->second];
    }
    std::int32_t id_limit() const {
        std::int32_t limit = 0;
        for (const AddedToken& t : tokens_) limit = std::max(limit, t.id + 1);
        return limit;
    }

    /// The input cut into added tokens and normalized text, in order.
    std::vector<Segment> extract_and_normalize(std::string_view text, const Normalizer& normalizer) const {
        std::vector<Segment> out;
        for (Segment& raw : split(Segment{std::string(text), std::nullopt, true}, raw_matcher_)) {
            if (raw.id) {
                out.push_back(std::move(raw));
                continue;
            }
            raw.text = normalizer.normalize(std::move(raw.text));
            for (Segment& s : split(std::move(raw), normalized_matcher_)) out.push_back(std::move(s));
        }
        return out;
    }

private:
    /// A content given twice is one token with the later properties (tokenizers
    /// replaces the entry of that id).
    void add(AddedToken token) {
        const auto same = std::find_if(tokens_.begin(), tokens_.end(), [&](const AddedToken& t) { return t.content == token.content; });
        const std::size_t index = same == tokens_.end() ? tokens_.size() : static_cast<std::size_t>(same - tokens_.begin());
        if (same == tokens_.end()) tokens_.push_back(token);
        else *same = token;
        index_of_id_[token.id] = index;
    }
    void build_matchers(const Normalizer& normalizer) {
        for (std::size_t index = 0; index < tokens_.size(); ++index) {
            const AddedToken& token = tokens_[index];
            if (token.normalized) normalized_matcher_.add(normalizer.normalize(token.content), index);
            else raw_matcher_.add(token.content, index);
        }
    }

    /// tokenizers' AddedVocabulary::find_matches + split on one segment.
    std::vector<Segment> split(Segment segment, const LeftmostLongestMatcher& matcher) const {
        std::vector<Segment> out;
        const std::string_view s = segment.text;
        const auto emit = [&](std::size_t begin, std::size_t end, std::optional<std::int32_t> id) {
            if (end > begin) out.push_back({std::string(s.substr(begin, end - begin)), id, segment.at_origin && begin == 0});
        };
        std::size_t done = 0;  // end of what has been emitted
        for (std::size_t from = 0; auto m = matcher.find(s, from);) {
            from = m->end;
            const AddedToken& token = tokens_[m->token];
            std::size_t begin = m->begin, end = m->end;
            if (token.single_word && (ends_with_word(s.substr(0, begin)) || starts_with_word(s.substr(end)))) continue;
            if (token.lstrip) begin = std::max(start_of_trailing_space(s.substr(0, begin)), done);
            if (token.rstrip) end += length_of_leading_space(s.substr(end));
            emit(done, begin, std::nullopt);
            emit(begin, end, token.id);
            done = end;
        }
        emit(done, s.size(), std::nullopt);
        return out;
    }

    static std::size_t code_point_length_back(std::string_view s) {
        std::size_t start = s.size() - 1;
        while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
        return s.size() - start;
    }
    static char32_t last_code_point(std::string_view s) {
        std::size_t start = s.size() - code_point_length_back(s);
        return next_code_point(s, start);
    }
    static bool ends_with_word(std::string_view s) { return !s.empty() && is_word_character(last_code_point(s)); }
    static bool starts_with_word(std::string_view s) {
        std::size_t i = 0;
        return !s.empty() && is_word_character(next_code_point(s, i));
    }
    static std::size_t start_of_trailing_space(std::string_view s) {
        while (!s.empty() && is_unicode_whitespace(last_code_point(s))) s.remove_suffix(code_point_length_back(s));
        return s.size();
    }
    static std::size_t length_of_leading_space(std::string_view s) {
        std::size_t i = 0, length = 0;
        while (i < s.size() && is_unicode_whitespace(next_code_point(s, i))) length = i;
        return length;
    }

    std::vector<AddedToken> tokens_;
    std::unordered_map<std::int32_t, std::size_t> index_of_id_;
    LeftmostLongestMatcher raw_matcher_, normalized_matcher_;
};

}  // namespace loranull::text
