#pragma once
// The decoders of tokenizer.json (tokens back to text), each a step over the
// list of token strings as tokenizers' decode_chain is: ByteLevel, Replace,
// ByteFallback, Fuse, Strip, Metaspace, and Sequence of them. The text is
// the concatenation of what the last step returns. Other types: refused.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <loranull/text/json_fields.hpp>
#include <loranull/text/normalizer.hpp>
#include <loranull/text/pre_tokenizer.hpp>
#include <loranull/text/regex.hpp>
#include <loranull/text/utf8.hpp>

namespace loranull::text {

/// The byte of a <0xNN> token (ByteFallback's test: 6 bytes, "<0x", two hex digits, ">").
inline std::optional<unsigned char> byte_of_fallback_token(const std::string& t) {
    if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return std::nullopt;
    const auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
    const int hi = hex(t[3]), lo = hex(t[4]);
    if (hi < 0 || lo < 0) return std::nullopt;
    return static_cast<unsigned char>(hi * 16 + lo);
}

struct DecoderStep {
    enum class Kind { byte_level, replace, byte_fallback, fuse, strip, metaspace } kind{};
    Replacement replacement;       // replace
    std::string metaspace_char;    // metaspace: the replacement character
    char32_t strip_char = 0;
    std::size_t strip_start = 0, strip_stop = 0;
    bool drop_first_replacement = true;  // metaspace: prepend_scheme is not "never"

    void apply(std::vector<std::string>& tokens) const {
        switch (kind) {
        case Kind::byte_level: return byte_level(tokens);
        case Kind::replace:
            for (std::string& t : tokens) t = replacement.apply(t);
            return;
        case Kind::byte_fallback: return byte_fallback(tokens);
        case Kind::fuse: {
            std::string all;
            for (const std::string& t : tokens) all += t;
            tokens.assign(1, std::move(all));
            return;
        }
        case Kind::strip:
            for (std::string& t : tokens) t = strip(t);
            return;
        case Kind::metaspace:
            for (std::size_t i = 0; i < tokens.size(); ++i)
                tokens[i] = replace_literal(tokens[i], metaspace_char, i == 0 && drop_first_replacement ? "" : " ");
            return;
        }
    }

private:
    /// Every token's characters back to bytes (a token with a character outside
    /// the table contributes its own UTF-8), then lossy UTF-8 of all of it.
    static void byte_level(std::vector<std::string>& tokens) {
        const ByteLevelTable& table = ByteLevelTable::get();
        std::string bytes;
        for (const std::string& t : tokens) {
            std::string mapped;
            bool all_mapped = true;
            for (std::size_t i = 0; i < t.size() && all_mapped;) {
                const char32_t c = next_code_point(t, i);
                all_mapped = c < table.byte_of_char.size() && table.byte_of_char[c] >= 0;
                if (all_mapped) mapped += static_cast<char>(table.byte_of_char[c]);
            }
            bytes += all_mapped ? mapped : t;
        }
        tokens.assign(1, utf8_lossy(bytes));
    }
    /// Runs of <0xNN> tokens become their bytes when those are valid UTF-8,
    /// else one U+FFFD per byte token.
    static void byte_fallback(std::vector<std::string>& tokens) {
        std::vector<std::string> out;
        std::string pending;
        const auto flush = [&] {
            if (pending.empty()) return;
            if (first_invalid_utf8(pending) == std::string::npos) out.push_back(pending);
            else out.insert(out.end(), pending.size(), "\xEF\xBF\xBD");
            pending.clear();
        };
        for (std::string& t : tokens) {
            if (const auto byte = byte_of_fallback_token(t)) {
                pending += static_cast<char>(*byte);
                continue;
            }
            flush();
            out.push_back(std::move(t));
        }
        flush();
        tokens = std::move(out);
    }
    std::string strip(const std::string& t) const {
        std::vector<std::pair<std::size_t, char32_t>> chars;  // (byte offset, code point)
        for (std::size_t i = 0; i < t.size();) {
            const std::size_t at = i;
            chars.emplace_back(at, next_code_point(t, i));
        }
        std::size_t begin = 0, end = chars.size();
        while (begin < strip_start && begin < chars.size() && chars[begin].second == strip_char) ++begin;
        for (std::size_t k = 0; k < strip_stop && end > begin && chars[end - 1].second == strip_char; ++k) --end;
        const std::size_t from_byte = begin < chars.size() ? chars[begin].first : t.size();
        const std::size_t to_byte = end < chars.size() ? chars[end].first : t.size();
        return t.substr(from_byte, to_byte - from_byte);
    }
};

class Decoder {
public:
    static Decoder from_json(const Json& spec, const std::string& path = "decoder") {
        Decoder d;
        d.present_ = !spec.is_null();
        if (d.present_) d.add(spec, path);
        return d;
    }

    /// The text of the tokens (no decoder: tokens joined by spaces, as tokenizers does).
    std::string decode(std::vector<std::string> tokens) const {
        std::string text;
        if (!present_) {
            for (std::size_t i = 0; i < tokens.size(); ++i) text += (i ? " " : "") + tokens[i];
            return text;
        }
        for (const DecoderStep& step : steps_) step.apply(tokens);
        for (const std::string& t : tokens) text += t;
        return text;
    }

private:
    void add(const Json& spec, const std::string& path) {
        const std::string type = type_of(spec, path);
        DecoderStep step;
        using Kind = DecoderStep::Kind;
        if (type == "Sequence") {
            for_each_in_sequence(spec, "decoders", path, [&](const Json& c, const std::string& p) { add(c, p); });
            return;
        } else if (type == "ByteLevel") {
            step.kind = Kind::byte_level;
        } else if (type == "Replace") {
            step.kind = Kind::replace;
            step.replacement = Replacement::from_json(spec, path);
        } else if (type == "ByteFallback") {
            step.kind = Kind::byte_fallback;
        } else if (type == "Fuse") {
            step.kind = Kind::fuse;
        } else if (type == "Strip") {
            step.kind = Kind::strip;
            step.strip_char = single_code_point(string_field(spec, "content", path), json_where, path + ".content");
            const std::int64_t start = integer_field(spec, "start", path), stop = integer_field(spec, "stop", path);
            require(start >= 0 && stop >= 0, json_where, path, ".start and .stop must be >= 0");
            step.strip_start = static_cast<std::size_t>(start), step.strip_stop = static_cast<std::size_t>(stop);
        } else if (type == "Metaspace") {
            step.kind = Kind::metaspace;
            step.metaspace_char = utf8_of(single_code_point(string_field(spec, "replacement", path), json_where, path + ".replacement"));
            const Json& scheme = member(spec, "prepend_scheme", path);
            step.drop_first_replacement = scheme.is_null() ? bool_field(spec, "add_prefix_space", path, true)
                                                           : string_field(spec, "prepend_scheme", path) != "never";
        } else {
            fail(json_where, path, ": decoder type ", type,
                 " is not supported (supported: ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence)");
        }
        steps_.push_back(std::move(step));
    }

    bool present_ = false;
    std::vector<DecoderStep> steps_;
};

}  // namespace loranull::text
