#pragma once
// Plain references for the two hot parts of byte-level BPE, written the
// obvious way and sharing no code with the fast path: the test oracle and the
// benchmark's peer.
//
//   scan_llama3_pattern   LLaMA 3's Split regex as a hand-written scanner
//                          (Qwen2's with digits_at_most = 1), one alternative
//                          after another, as leftmost-first alternation reads
//   naive_bpe             BPE by repeated scan for the lowest-rank adjacent
//                          pair, on strings

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <loranull/core/error.hpp>
#include <loranull/text/utf8.hpp>

namespace loranull::text::reference {

/// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*
/// |\s*[\r\n]+|\s+(?!\S)|\s+  -- every character is covered, so the matches tile the text.
inline std::vector<std::string> scan_llama3_pattern(std::string_view text, int digits_at_most = 3) {
    require_utf8(text, "text::reference::scan_llama3_pattern", "text");
    std::vector<char32_t> c;
    std::vector<std::size_t> at;  // byte offset of each code point, and of the end
    for (std::size_t i = 0; i < text.size();) at.push_back(i), c.push_back(next_code_point(text, i));
    at.push_back(text.size());
    const std::size_t n = c.size();
    const auto L = [&](std::size_t k) { return k < n && is_letter(c[k]); };
    const auto N = [&](std::size_t k) { return k < n && is_number(c[k]); };
    const auto S = [&](std::size_t k) { return k < n && is_unicode_whitespace(c[k]); };
    const auto newline = [&](std::size_t k) { return k < n && (c[k] == '\r' || c[k] == '\n'); };
    const auto other = [&](std::size_t k) { return k < n && !S(k) && !L(k) && !N(k); };  // [^\s\p{L}\p{N}]
    const auto lower = [&](std::size_t k) -> char32_t {
        if (k >= n) return 0;
        if (c[k] == 0x17F) return 's';  // LATIN SMALL LETTER LONG S folds to s
        return c[k] >= 'A' && c[k] <= 'Z' ? c[k] + 32 : c[k];
    };
    std::vector<std::string> out;
    for (std::size_t i = 0; i < n;) {
        std::size_t end = i;
        if (c[i] == '\'' && (lower(i + 1) == 's' || lower(i + 1) == 't' || lower(i + 1) == 'm' || lower(i + 1) == 'd')) {
            end = i + 2;
        } else if (c[i] == '\'' && ((lower(i + 1) == 'r' && lower(i + 2) == 'e') || (lower(i + 1) == 'v' && lower(i + 2) == 'e') ||
                                    (lower(i + 1) == 'l' && lower(i + 2) == 'l'))) {
            end = i + 3;
        } else if (L(i) || (!newline(i) && !L(i) && !N(i) && L(i + 1))) {
            end = L(i) ? i : i + 1;
            while (L(end)) ++end;
        } else if (N(i)) {
            while (N(end) && end - i < static_cast<std::size_t>(digits_at_most)) ++end;
        } else if (other(i) || (c[i] == ' ' && other(i + 1))) {
            end = c[i] == ' ' ? i + 1 : i;
            while (other(end)) ++end;
            while (newline(end)) ++end;
        } else {  // white space: the three last alternatives
            std::size_t run = i;
            while (S(run)) ++run;
            std::size_t last_newline = n;
            for (std::size_t k = i; k < run; ++k)
                if (newline(k)) last_newline = k;
            if (last_newline != n) end = last_newline + 1;     // \s*[\r\n]+
            else if (run == n || run - i == 1) end = run;      // \s+(?!\S) to the end, or \s+
            else end = run - 1;                                // \s+(?!\S): leave one before the non-space
        }
        out.emplace_back(text.substr(at[i], at[end] - at[i]));
        i = end;
    }
    return out;
}

/// BPE of `symbols` (the initial pieces) by repeated scan: the adjacent pair of
/// lowest rank (ties: leftmost) is merged until no pair has a rank.
inline std::vector<std::string> naive_bpe(std::vector<std::string> symbols,
                                          const std::map<std::pair<std::string, std::string>, std::size_t>& rank) {
    for (;;) {
        std::size_t best = symbols.size(), best_rank = 0;
        for (std::size_t k = 0; k + 1 < symbols.size(); ++k) {
            const auto it = rank.find({symbols[k], symbols[k + 1]});
            if (it != rank.end() && (best == symbols.size() || it->second < best_rank)) best = k, best_rank = it->second;
        }
        if (best == symbols.size()) return symbols;
        symbols[best] += symbols[best + 1];
        symbols.erase(symbols.begin() + static_cast<std::ptrdiff_t>(best) + 1);
    }
}

/// The characters of s, one string each (BPE's initial symbols).
inline std::vector<std::string> characters_of(std::string_view s) {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < s.size();) {
        const std::size_t n = code_point_length(s[i]);
        out.emplace_back(s.substr(i, n));
        i += n;
    }
    return out;
}

}  // namespace loranull::text::reference
