// loranull-tokenize: documents on stdin to token ids on stdout, with an HF
// tokenizer.json (loranull/text), so that calibration data for loranull-build
// can be tokenized without Python. The contract (docs/loranull-tokenize.md) is
// the help text of options.hpp.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>

#include <loranull/text.hpp>
#include <loranull/text/documents.hpp>

#include "../tool_options.hpp"
#include "options.hpp"

using namespace loranull;
using namespace loranull::tools;
using namespace loranull::tools::tokenize;

namespace {

text::Tokenizer load(const std::string& model) {
    if (std::filesystem::is_regular_file(model)) return text::Tokenizer::from_json(model);
    return text::Tokenizer::from_folder(model);
}

int run(const Options& o) {
    const text::Tokenizer tokenizer = load(o.model);
    std::ios::sync_with_stdio(false);
    std::string out;
    text::read_documents(std::cin, o.format, o.field, "", [&](std::string&& document, std::size_t) {
        out.clear();
        for (const std::int32_t id : tokenizer.encode(document, o.add_special_tokens)) {
            if (!out.empty()) out += ' ';
            out += std::to_string(id);
        }
        out += '\n';
        std::fwrite(out.data(), 1, out.size(), stdout);
    });
    if (std::fflush(stdout) != 0) tool_fail("cannot write the ids to stdout");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return run_tool("loranull-tokenize", [&] { return run(parse_options(argc, argv)); });
}
