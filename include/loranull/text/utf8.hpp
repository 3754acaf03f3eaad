#pragma once
// UTF-8 as the tokenizers need it: validation (a tokenizer takes valid UTF-8
// only, as a Rust &str is), code points in and out, Rust's lossy conversion
// (what the ByteLevel decoder returns), and the few Unicode classes that
// tokenizers asks of Rust's `char` (is_whitespace) and the regex crate's \w (single_word).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <utf8proc.h>

#include <loranull/core/error.hpp>

namespace loranull::text {

/// The length of a well-formed UTF-8 sequence at s[i], or 0 when the bytes
/// there are not one (Unicode Table 3-7: no overlongs, no surrogates, at most
/// U+10FFFF). `max_prefix` receives the length of the longest prefix of a
/// valid sequence found there (>= 1): the "maximal subpart" that Rust's
/// from_utf8_lossy replaces by one U+FFFD.
inline std::size_t utf8_sequence_length(std::string_view s, std::size_t i, std::size_t* max_prefix = nullptr) {
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char b0 = byte(i);
    std::size_t need = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // the range allowed for the second byte
    if (b0 < 0x80) need = 1;
    else if (b0 >= 0xC2 && b0 <= 0xDF) need = 2;
    else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 3;
        if (b0 == 0xE0) lo = 0xA0;
        if (b0 == 0xED) hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 4;
        if (b0 == 0xF0) lo = 0x90;
        if (b0 == 0xF4) hi = 0x8F;
    }
    std::size_t got = 1;
    if (need > 1) {
        for (; got < need && i + got < s.size(); ++got) {
            const unsigned char b = byte(i + got);
            const bool ok = got == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
            if (!ok) break;
        }
    }
    if (max_prefix) *max_prefix = got;
    return need != 0 && got == need ? need : 0;
}

/// The byte offset of the first ill-formed sequence, or npos when s is valid.
inline std::size_t first_invalid_utf8(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        if (static_cast<unsigned char>(s[i]) < 0x80) {
            ++i;
            continue;
        }
        const std::size_t n = utf8_sequence_length(s, i);
        if (n == 0) return i;
        i += n;
    }
    return std::string_view::npos;
}

/// Throws unless s is valid UTF-8, naming where and the offset.
inline void require_utf8(std::string_view s, std::string_view where, std::string_view what) {
    const std::size_t bad = first_invalid_utf8(s);
    require(bad == std::string_view::npos, where, what, " is not valid UTF-8 (bad byte 0x", std::hex,
            bad == std::string_view::npos ? 0 : static_cast<int>(static_cast<unsigned char>(s[bad])), std::dec,
            " at offset ", bad, ")");
}

/// Rust's String::from_utf8_lossy: every maximal ill-formed subpart becomes U+FFFD.
inline std::string utf8_lossy(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
        std::size_t prefix = 1;
        const std::size_t n = utf8_sequence_length(s, i, &prefix);
        if (n != 0) {
            out.append(s.substr(i, n));
            i += n;
        } else {
            out.append("\xEF\xBF\xBD");
            i += prefix;
        }
    }
    return out;
}

/// The code point starting at s[i] (s valid UTF-8); advances i past it.
inline char32_t next_code_point(std::string_view s, std::size_t& i) {
    const auto b = [&](std::size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(s[k])); };
    const char32_t b0 = b(i);
    if (b0 < 0x80) return ++i, b0;
    if (b0 < 0xE0) return i += 2, ((b0 & 0x1F) << 6) | (b(i - 1) & 0x3F);
    if (b0 < 0xF0) return i += 3, ((b0 & 0x0F) << 12) | ((b(i - 2) & 0x3F) << 6) | (b(i - 1) & 0x3F);
    i += 4;
    return ((b0 & 0x07) << 18) | ((b(i - 3) & 0x3F) << 12) | ((b(i - 2) & 0x3F) << 6) | (b(i - 1) & 0x3F);
}

/// The byte length of the code point starting with lead byte `lead`.
inline std::size_t code_point_length(char lead) {
    const auto b = static_cast<unsigned char>(lead);
    return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
}

/// Appends c as UTF-8.
inline void append_utf8(std::string& out, char32_t c) {
    if (c < 0x80) {
        out += static_cast<char>(c);
    } else if (c < 0x800) {
        out += static_cast<char>(0xC0 | (c >> 6));
        out += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
        out += static_cast<char>(0xE0 | (c >> 12));
        out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (c & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (c >> 18));
        out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (c & 0x3F));
    }
}

inline std::string utf8_of(char32_t c) {
    std::string s;
    append_utf8(s, c);
    return s;
}

/// The one code point that s holds, or throws (for Strip's and Metaspace's
/// single-character fields).
inline char32_t single_code_point(std::string_view s, std::string_view where, std::string_view field) {
    require_utf8(s, where, field);
    std::size_t i = 0;
    const char32_t c = s.empty() ? 0 : next_code_point(s, i);
    require(!s.empty() && i == s.size(), where, field, " must be one character, got '", s, "'");
    return c;
}

/// Rust's char::is_whitespace: the Unicode White_Space property (fixed list).
inline bool is_unicode_whitespace(char32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

inline bool is_letter(char32_t c) {  // \p{L}
    const auto k = utf8proc_category(static_cast<utf8proc_int32_t>(c));
    return k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO;
}

inline bool is_number(char32_t c) {  // \p{N}
    const auto k = utf8proc_category(static_cast<utf8proc_int32_t>(c));
    return k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO;
}

/// A character of the `regex` crate's Unicode \w, which tokenizers' AddedVocabulary
/// uses for single_word (added_vocabulary.rs: ^\w and \w$): Alphabetic (L*, Nl and
/// Other_Alphabetic), marks (M*), Nd, connector punctuation (Pc, e.g. '_') and
/// Join_Control (U+200C, U+200D). No (e.g. superscript two) is not a word character.
/// Other_Alphabetic outside M* is taken as the enclosed letters U+24B6..U+24E9 and
/// U+1F130..U+1F189 (the So characters of that property).
inline bool is_word_character(char32_t c) {
    if (c == 0x200C || c == 0x200D || (c >= 0x24B6 && c <= 0x24E9) || (c >= 0x1F130 && c <= 0x1F149) ||
        (c >= 0x1F150 && c <= 0x1F169) || (c >= 0x1F170 && c <= 0x1F189))
        return true;
    switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC: return true;
    default: return false;
    }
}

}  // namespace loranull::text
