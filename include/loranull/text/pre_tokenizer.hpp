#pragma once
// The pre-tokenizers of tokenizer.json: Split (a regex or a literal, every
// delimiter behaviour, invert), ByteLevel (GPT-2's byte <-> character table,
// add_prefix_space, use_regex), Metaspace (SentencePiece's "▁", prepend_scheme
// always/first/never, split) and Sequence. Any other type is refused by name.
//
// A pre-tokenizer cuts a piece of text into smaller pieces; the model then
// encodes each piece on its own, so no token ever crosses a cut.

#include <algorithm>
#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <loranull/text/json_fields.hpp>
#include <loranull/text/regex.hpp>
#include <loranull/text/utf8.hpp>

namespace loranull::text {

/// A piece of (normalized) text, and whether it starts where the input text
/// starts (Metaspace's "first" prepends only to such a piece).
struct Piece {
    std::string text;
    bool at_origin = false;
};

/// GPT-2's table: every byte as a printable character (bytes that are
/// printable Latin-1 stand for themselves; the others are 256, 257, ... in order).
struct ByteLevelTable {
    std::array<std::string, 256> char_of_byte;  // UTF-8 of the character standing for the byte
    std::array<int, 324> byte_of_char;           // the byte a character < 324 stands for, or -1

    ByteLevelTable() {
        byte_of_char.fill(-1);
        char32_t next = 256;
        for (int b = 0; b < 256; ++b) {
            const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
            const char32_t c = printable ? static_cast<char32_t>(b) : next++;
            char_of_byte[b] = utf8_of(c);
            byte_of_char[c] = b;
        }
    }
    static const ByteLevelTable& get() {
        static const ByteLevelTable table;
        return table;
    }
    std::string encode(std::string_view bytes) const {
        std::string out;
        out.reserve(bytes.size() * 2);
        for (const char b : bytes) out += char_of_byte[static_cast<unsigned char>(b)];
        return out;
    }
};

/// GPT-2's own pattern, which ByteLevel applies when use_regex is true.
inline constexpr const char* gpt2_pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

/// How Split treats what the pattern matched (tokenizers' SplitDelimiterBehavior).
enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

/// The cuts of tokenizers' NormalizedString::split: spans (matches flagged)
/// merged or dropped by `behavior`; empty pieces disappear.
inline std::vector<std::pair<std::size_t, std::size_t>> split_by_behavior(const std::vector<Span>& spans,
                                                                           SplitBehavior behavior) {
    std::vector<std::pair<std::size_t, std::size_t>> cuts;
    bool previous_match = false;
    if (behavior == SplitBehavior::merged_with_next) {
        for (auto s = spans.rbegin(); s != spans.rend(); ++s) {
            if (s->is_match && !previous_match && !cuts.empty()) cuts.back().first = s->begin;
            else cuts.emplace_back(s->begin, s->end);
            previous_match = s->is_match;
        }
        std::reverse(cuts.begin(), cuts.end());
    } else {
        for (const Span& s : spans) {
            const bool glue = behavior == SplitBehavior::merged_with_previous ? (s.is_match && !previous_match)
                              : behavior == SplitBehavior::contiguous         ? (s.is_match == previous_match)
                                                                              : false;
            if (behavior == SplitBehavior::removed && s.is_match) continue;
            if (glue && !cuts.empty()) cuts.back().second = s.end;
            else cuts.emplace_back(s.begin, s.end);
            previous_match = s.is_match;
        }
    }
    std::erase_if(cuts, [](const auto& c) { return c.first == c.second; });
    return cuts;
}

/// The spans of every occurrence of a literal (Split's "String" pattern).
inline std::vector<Span> find_literal(std::string_view text, std::string_view literal) {
    std::vector<Span> spans;
    std::size_t previous = 0;
    for (std::size_t hit; !literal.empty() && (hit = text.find(literal, previous)) != std::string_view::npos;) {
        if (hit != previous) spans.push_back({previous, hit, false});
        spans.push_back({hit, hit + literal.size(), true});
        previous = hit + literal.size();
    }
    if (previous != text.size()) spans.push_back({previous, text.size(), false});
    return spans;
}

/// One pre-tokenization step.
struct PreTokenizerStep {
    enum class Kind { split, byte_level, metaspace } kind{};
    std::shared_ptr<Regex> regex;  // split (regex pattern), byte_level with use_regex
    std::string literal;           // split with a String pattern; metaspace: the replacement
    SplitBehavior behavior = SplitBehavior::isolated;
    bool invert = false, add_prefix_space = false, metaspace_split = false;
    enum class Prepend { always, first, never } prepend = Prepend::always;

    void apply(std::vector<Piece>& pieces) const {
        std::vector<Piece> out;
        out.reserve(pieces.size());
        for (Piece& piece : pieces) {
            if (kind == Kind::split) cut(piece, regex ? regex->find_matches(piece.text) : find_literal(piece.text, literal), behavior, out);
            else if (kind == Kind::byte_level) byte_level(piece, out);
            else metaspace(piece, out);
        }
        pieces = std::move(out);
    }

private:
    void cut(const Piece& piece, std::vector<Span> spans, SplitBehavior how, std::vector<Piece>& out) const {
        if (invert)
            for (Span& s : spans) s.is_match = !s.is_match;
        for (const auto& [begin, end] : split_by_behavior(spans, how))
            out.push_back({piece.text.substr(begin, end - begin), piece.at_origin && begin == 0});
    }
    void byte_level(Piece& piece, std::vector<Piece>& out) const {
        if (add_prefix_space && piece.text.rfind(' ', 0) != 0) piece.text = ' ' + piece.text;
        const ByteLevelTable& table = ByteLevelTable::get();
        if (!regex) return out.push_back({table.encode(piece.text), piece.at_origin});
        std::vector<Piece> parts;
        cut(piece, regex->find_matches(piece.text), SplitBehavior::isolated, parts);
        for (Piece& p : parts) out.push_back({table.encode(p.text), p.at_origin});
    }
    void metaspace(Piece& piece, std::vector<Piece>& out) const {
        piece.text = replace_all_spaces(piece.text);
        const bool starts = piece.text.rfind(literal, 0) == 0;
        if (!starts && (prepend == Prepend::always || (prepend == Prepend::first && piece.at_origin)))
            piece.text.insert(0, literal);
        if (!metaspace_split) return out.push_back(std::move(piece));
        cut(piece, find_literal(piece.text, literal), SplitBehavior::merged_with_next, out);
    }
    std::string replace_all_spaces(const std::string& s) const {
        std::string r;
        r.reserve(s.size() + 8);
        for (const char c : s)
            if (c == ' ') r.append(literal);
            else r.push_back(c);
        return r;
    }
};

/// A pre-tokenizer: its steps in order (a Sequence flattened; none: one piece).
class PreTokenizer {
public:
    static PreTokenizer from_json(const Json& spec, const std::string& path = "pre_tokenizer") {
        PreTokenizer p;
        if (!spec.is_null()) p.add(spec, path);
        return p;
    }

    void pre_tokenize(std::vector<Piece>& pieces) const {
        for (const PreTokenizerStep& step : steps_) step.apply(pieces);
    }

private:
    void add(const Json& spec, const std::string& path) {
        const std::string type = type_of(spec, path);
        PreTokenizerStep step;
        using Kind = PreTokenizerStep::Kind;
        if (type == "Sequence") {
            for_each_in_sequence(spec, "pretokenizers", path, [&](const Json& c, const std::string& p) { add(c, p); });
            return;
        } else if (type == "Split") {
            step.kind = Kind::split;
            const PatternSpec pattern = pattern_field(spec, path);
            if (pattern.is_regex) step.regex = std::make_shared<Regex>(pattern.text, json_where);
            else step.literal = pattern.text;
            step.behavior = behavior_of(string_field(spec, "behavior", path), path);
            step.invert = bool_field(spec, "invert", path, false);
        } else if (type == "ByteLevel") {
            step.kind = Kind::byte_level;
            step.add_prefix_space = bool_field(spec, "add_prefix_space", path, true);
            if (bool_field(spec, "use_regex", path, true)) step.regex = std::make_shared<Regex>(gpt2_pattern, json_where);
        } else if (type == "Metaspace") {
            step.kind = Kind::metaspace;
            step.literal = utf8_of(single_code_point(string_field(spec, "replacement", path), json_where,
                                                     path + ".replacement"));
            step.metaspace_split = bool_field(spec, "split", path, true);
            step.prepend = prepend_scheme_of(spec, path);
        } else {
            fail(json_where, path, ": pre_tokenizer type ", type,
                 " is not supported (supported: Split, ByteLevel, Metaspace, Sequence)");
        }
        steps_.push_back(std::move(step));
    }

    static SplitBehavior behavior_of(const std::string& name, const std::string& path) {
        if (name == "Removed") return SplitBehavior::removed;
        if (name == "Isolated") return SplitBehavior::isolated;
        if (name == "MergedWithPrevious") return SplitBehavior::merged_with_previous;
        if (name == "MergedWithNext") return SplitBehavior::merged_with_next;
        if (name == "Contiguous") return SplitBehavior::contiguous;
        fail(json_where, path, ".behavior ", name, " is unknown (Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous)");
    }

    /// prepend_scheme (newer files) or add_prefix_space (older: true = always).
    static PreTokenizerStep::Prepend prepend_scheme_of(const Json& spec, const std::string& path) {
        using P = PreTokenizerStep::Prepend;
        const Json& scheme = member(spec, "prepend_scheme", path);
        if (scheme.is_null()) return bool_field(spec, "add_prefix_space", path, true) ? P::always : P::never;
        const std::string name = string_field(spec, "prepend_scheme", path);
        if (name == "always") return P::always;
        if (name == "first") return P::first;
        if (name == "never") return P::never;
        fail(json_where, path, ".prepend_scheme ", name, " is unknown (always, first, never)");
    }

    std::vector<PreTokenizerStep> steps_;
};

}  // namespace loranull::text
