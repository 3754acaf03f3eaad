#pragma once
// The normalizers of tokenizer.json that LLaMA 2, Mistral and Qwen2 use:
// NFC/NFD/NFKC/NFKD (utf8proc), Prepend, Replace (a literal or a regex),
// Strip, and Sequence of them. Any other type is refused by name.
//
// tokenizers keeps an alignment to the original text beside the normalized
// string; ids never depend on it, so a normalizer here maps string to string.

#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <utf8proc.h>

#include <loranull/text/json_fields.hpp>
#include <loranull/text/regex.hpp>
#include <loranull/text/utf8.hpp>

namespace loranull::text {

/// Every occurrence of `from` (non-empty) replaced by `to`, left to right.
inline std::string replace_literal(std::string_view text, std::string_view from, std::string_view to) {
    std::string out;
    out.reserve(text.size());
    std::size_t at = 0;
    for (std::size_t hit; (hit = text.find(from, at)) != std::string_view::npos; at = hit + from.size()) {
        out.append(text.substr(at, hit - at));
        out.append(to);
    }
    out.append(text.substr(at));
    return out;
}

/// Unicode normalization form `options` (utf8proc flags) of valid UTF-8.
inline std::string unicode_normal_form(std::string_view text, int options) {
    bool ascii = true;
    for (const char c : text) ascii = ascii && static_cast<unsigned char>(c) < 0x80;
    if (ascii) return std::string(text);  // every form leaves ASCII alone
    utf8proc_uint8_t* mapped = nullptr;
    const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                            static_cast<utf8proc_ssize_t>(text.size()), &mapped,
                                            static_cast<utf8proc_option_t>(options | UTF8PROC_STABLE));
    require(n >= 0, "text::unicode_normal_form", "utf8proc: ", utf8proc_errmsg(n));
    std::string out(reinterpret_cast<const char*>(mapped), static_cast<std::size_t>(n));
    std::free(mapped);
    return out;
}

/// Replace's pattern ({"String": s} or {"Regex": r}) and content: one type for
/// the Replace normalizer and the Replace decoder, which read the same fields.
struct Replacement {
    std::string literal, content;
    std::shared_ptr<Regex> regex;

    static Replacement from_json(const Json& spec, const std::string& path) {
        Replacement r;
        const PatternSpec pattern = pattern_field(spec, path);
        require(!pattern.text.empty(), json_where, path, ".pattern must not be empty");
        r.content = string_field(spec, "content", path);
        if (pattern.is_regex) r.regex = std::make_shared<Regex>(pattern.text, json_where);
        else r.literal = pattern.text;
        return r;
    }
    std::string apply(std::string_view s) const {
        return regex ? regex->replace_all(s, content) : replace_literal(s, literal, content);
    }
};

/// One step of a normalizer.
struct NormalizerStep {
    enum class Kind { unicode_form, prepend, replace, strip } kind{};
    int unicode_options = 0;      // unicode_form: utf8proc flags
    std::string text;             // prepend
    Replacement replacement;      // replace
    bool strip_left = false, strip_right = false;

    std::string apply(std::string s) const {
        switch (kind) {
        case Kind::unicode_form: return unicode_normal_form(s, unicode_options);
        case Kind::prepend: return s.empty() ? s : text + s;  // tokenizers: nothing is prepended to ""
        case Kind::replace: return replacement.apply(s);
        case Kind::strip: return strip_white_space(s);
        }
        return s;
    }

private:
    std::string strip_white_space(const std::string& s) const {
        std::size_t begin = 0, end = s.size();
        if (strip_left)  // the condition reads one code point and moves i past it
            for (std::size_t i = 0; i < s.size() && is_unicode_whitespace(next_code_point(s, i));) begin = i;
        if (strip_right)
            while (end > begin) {
                std::size_t start = end - 1;
                while (start > begin && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
                std::size_t i = start;
                if (!is_unicode_whitespace(next_code_point(s, i))) break;
                end = start;
            }
        return s.substr(begin, end - begin);
    }
};

/// A normalizer: its steps in order (a Sequence flattened; none: identity).
class Normalizer {
public:
    Normalizer() = default;

    /// From tokenizer.json's "normalizer" (null: none).
    static Normalizer from_json(const Json& spec, const std::string& path = "normalizer") {
        Normalizer n;
        if (!spec.is_null()) n.add(spec, path);
        return n;
    }

    bool empty() const { return steps_.empty(); }

    std::string normalize(std::string s) const {
        for (const NormalizerStep& step : steps_) s = step.apply(std::move(s));
        return s;
    }

private:
    void add(const Json& spec, const std::string& path) {
        const std::string type = type_of(spec, path);
        NormalizerStep step;
        using Kind = NormalizerStep::Kind;
        if (type == "Sequence") {
            for_each_in_sequence(spec, "normalizers", path, [&](const Json& c, const std::string& p) { add(c, p); });
            return;
        } else if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
            step.kind = Kind::unicode_form;
            step.unicode_options = (type[2] == 'C' || type[3] == 'C') ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE;
            if (type[2] == 'K') step.unicode_options |= UTF8PROC_COMPAT;
        } else if (type == "Prepend") {
            step.kind = Kind::prepend;
            step.text = string_field(spec, "prepend", path);
        } else if (type == "Replace") {
            step.kind = Kind::replace;
            step.replacement = Replacement::from_json(spec, path);
        } else if (type == "Strip") {
            step.kind = Kind::strip;
            step.strip_left = bool_field(spec, "strip_left", path, false);
            step.strip_right = bool_field(spec, "strip_right", path, false);
        } else {
            fail(json_where, path, ": normalizer type ", type,
                 " is not supported (supported: NFC, NFD, NFKC, NFKD, Prepend, Replace, Strip, Sequence)");
        }
        steps_.push_back(std::move(step));
    }

    std::vector<NormalizerStep> steps_;
};

}  // namespace loranull::text
