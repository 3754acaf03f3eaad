// libFuzzer target for text::Tokenizer::from_folder: a tokenizer.json and an
// optional tokenizer_config.json, from one input of two parts
// (fuzz_input.hpp): tokenizer.json --8<-- tokenizer_config.json (an empty
// second part: no config file). A file that loads must then encode a few
// texts and decode what it encoded; a bad file must fail with a
// loranull::error naming what is wrong.
#include <cstddef>
#include <cstdint>
#include <string>

#include <loranull/text/tokenizer.hpp>

#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto part = fuzz_input::parts(data, size, 2);
    const fuzz_input::Scratch scratch;
    if (!scratch.write("tokenizer.json", part[0])) return 0;
    if (!part[1].empty() && !scratch.write("tokenizer_config.json", part[1])) return 0;
    try {
        const auto t = loranull::text::Tokenizer::from_folder(fuzz_input::Scratch::dir().string());
        for (const char* text : {"", "Hello world", "  12345 hello\n\n\tworld's", "h\xC3\xA9llo \xE4\xB8\xAD \xF0\x9F\x99\x82",
                                 "<s> </s> <|begin_of_text|> <unk>"}) {
            const auto ids = t.encode(text);
            (void)t.decode(ids);
            (void)t.decode(ids, /*skip_special_tokens=*/true);
        }
        (void)t.bos_id(), (void)t.eos_id(), (void)t.vocab_size();
    } catch (const loranull::error&) {
        // a malformed or unsupported tokenizer: the expected, clear failure
    }
    return 0;
}
