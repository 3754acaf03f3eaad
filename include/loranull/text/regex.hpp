#pragma once
// The regular expressions of tokenizer.json (Split's and Replace's "Regex"
// patterns) through PCRE2, compiled with UTF and UCP so that \p{L}, \p{N}, \s
// and (?i:) mean what they mean in Oniguruma, the engine tokenizers uses:
// a backtracking engine with leftmost-first alternation, as PCRE2 is.
//
// One difference is removed here: PCRE2's \s with UCP also matches U+180E
// (MONGOLIAN VOWEL SEPARATOR, in \h), which is not White_Space and which
// Oniguruma's \s does not match. \s and \S are rewritten to the White_Space
// list before compiling (inside a class \s becomes the ranges; \S inside a
// class is refused, no real tokenizer.json has it).

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <loranull/core/error.hpp>

namespace loranull::text {

/// A match or the text between two matches: bytes [begin, end) of the input.
struct Span {
    std::size_t begin = 0, end = 0;
    bool is_match = false;
};

namespace detail {

inline constexpr std::string_view white_space_ranges =
    "\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";

/// The pattern with \s and \S spelled as the White_Space property.
inline std::string rewrite_white_space(std::string_view pattern, std::string_view where) {
    std::string out;
    bool in_class = false;
    for (std::size_t i = 0; i < pattern.size(); ++i) {
        const char c = pattern[i];
        if (c == '\\' && i + 1 < pattern.size()) {
            const char next = pattern[++i];
            if (next == 's') {
                if (!in_class) out += '[';
                out += white_space_ranges;
                if (!in_class) out += ']';
            } else if (next == 'S') {
                require(!in_class, where, "\\S inside a character class is not supported in pattern '", pattern, "'");
                out += "[^";
                out += white_space_ranges;
                out += ']';
            } else {
                out += c;
                out += next;
            }
            continue;
        }
        if (c == '[' && !in_class) {
            in_class = true;
            out += c;
            // A ']' (or '^]') right after '[' is a literal, not the end.
            if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
            if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += pattern[++i];
            continue;
        }
        if (c == ']' && in_class) in_class = false;
        out += c;
    }
    return out;
}

}  // namespace detail

/// A compiled pattern (JIT where PCRE2 has it). Immutable after
/// construction, so one Regex serves every thread; each search brings its own
/// match data.
class Regex {
public:
    Regex(std::string_view pattern, std::string_view where) : pattern_(pattern) {
        const std::string rewritten = detail::rewrite_white_space(pattern, where);
        int code = 0;
        PCRE2_SIZE offset = 0;
        pcre2_code* compiled = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(rewritten.data()), rewritten.size(),
                                             PCRE2_UTF | PCRE2_UCP, &code, &offset, nullptr);
        if (!compiled) {
            PCRE2_UCHAR message[256];
            pcre2_get_error_message(code, message, sizeof message);
            fail(where, "cannot compile the regex '", pattern, "': ", reinterpret_cast<const char*>(message));
        }
        code_.reset(compiled, CodeFree{});
        pcre2_jit_compile(code_.get(), PCRE2_JIT_COMPLETE);  // without JIT the interpreter still runs
    }

    const std::string& pattern() const { return pattern_; }

    /// The input cut into matches and the text between them, in order, as
    /// tokenizers' Pattern::find_matches does (every byte in one span; an
    /// empty match is a span of length 0). `text` must be valid UTF-8.
    std::vector<Span> find_matches(std::string_view text) const {
        std::vector<Span> spans;
        if (text.empty()) return spans;
        const std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> data(
            pcre2_match_data_create_from_pattern(code_.get(), nullptr), &pcre2_match_data_free);
        require(data != nullptr, "text::Regex::find_matches", "out of memory");
        const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
        std::size_t previous = 0, start = 0;
        while (start <= text.size()) {
            const int rc = pcre2_match(code_.get(), subject, text.size(), start, PCRE2_NO_UTF_CHECK, data.get(), nullptr);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            require(rc >= 0, "text::Regex::find_matches", "PCRE2 error ", rc, " matching '", pattern_, "'");
            const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data.get());
            const std::size_t begin = ovector[0], end = ovector[1];
            if (previous != begin) spans.push_back({previous, begin, false});
            spans.push_back({begin, end, true});
            previous = end;
            if (end > begin) {
                start = end;
            } else {  // an empty match: search again one character further on
                if (end >= text.size()) break;
                start = end + 1;
                while (start < text.size() && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) ++start;
            }
        }
        if (previous != text.size()) spans.push_back({previous, text.size(), false});
        return spans;
    }

    /// Every match replaced by `content` (Replace's regex form).
    std::string replace_all(std::string_view text, std::string_view content) const {
        std::string out;
        for (const Span& s : find_matches(text))
            out += s.is_match ? std::string(content) : std::string(text.substr(s.begin, s.end - s.begin));
        return out;
    }

private:
    struct CodeFree {
        void operator()(pcre2_code* c) const { pcre2_code_free(c); }
    };
    std::string pattern_;
    std::shared_ptr<pcre2_code> code_;
};

}  // namespace loranull::text
