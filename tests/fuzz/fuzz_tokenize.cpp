// libFuzzer target for text::Tokenizer::encode and decode: arbitrary bytes as
// text through four tokenizers shaped like the real ones (tests/text_fixtures.hpp):
// LLaMA 3 (byte-level BPE, ignore_merges), Qwen2 (NFC, single digits), and
// LLaMA 2 (SentencePiece-style BPE with byte fallback) in its legacy
// normalizer form and its Metaspace form. The first byte picks the tokenizer,
// the rest is the text.
//
// What must hold, beyond "no crash":
//   - text that is not UTF-8 is refused with a loranull::error (and only such text);
//   - every id encode returns decodes (no error);
//   - byte-level BPE without a normalizer (LLaMA 3) gives the text back exactly,
//     special tokens in the text included (decode without skipping them);
//   - Qwen2 gives back its normalized (NFC) text, so a second round trip is the identity.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <loranull/text/tokenizer.hpp>
#include <loranull/text/utf8.hpp>

#include "../text_fixtures.hpp"

namespace {

using loranull::text::Tokenizer;

const Tokenizer& tokenizer(unsigned which) {
    using namespace test_text;
    static const ByteLevelVocab v({{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {" ", "w"}, {"o", "r"},
                                   {" w", "or"}, {"l", "d"}, {" wor", "ld"}, {"1", "2"}, {"12", "3"}, {" ", " "},
                                   {"\n", "\n"}, {"'", "s"}, {"\xE4", "\xB8"}, {"\xE4\xB8", "\xAD"}},
                                  {"xyz", " xyz"});
    static const std::vector<std::string> pieces = {"▁", "a", "b", "▁a", "ab", "▁ab", "é", "▁é"};
    static const std::vector<std::pair<std::string, std::string>> merges = {{"▁", "a"}, {"a", "b"}, {"▁a", "b"}, {"▁", "é"}};
    static const Tokenizer all[] = {
        Tokenizer::from_json_text(llama3_json(v).dump()),
        Tokenizer::from_json_text(qwen2_json(v).dump()),
        Tokenizer::from_json_text(llama2_json(pieces, merges, true).dump()),
        Tokenizer::from_json_text(llama2_json(pieces, merges, false).dump()),
    };
    return all[which % 4];
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const unsigned which = data[0] % 4;
    const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
    const Tokenizer& t = tokenizer(which);
    if (loranull::text::first_invalid_utf8(text) != std::string_view::npos) {
        try {
            (void)t.encode(text);
        } catch (const loranull::error&) {
            return 0;  // refused, as it must be
        }
        __builtin_trap();  // not UTF-8, yet encoded
    }
    const auto ids = t.encode(text, /*add_special_tokens=*/which != 1);
    const std::string back = t.decode(t.encode(text, false));
    (void)t.decode(ids, /*skip_special_tokens=*/true);
    if (which == 0 && back != text) __builtin_trap();
    if (which == 1 && t.decode(t.encode(back, false)) != back) __builtin_trap();
    return 0;
}
