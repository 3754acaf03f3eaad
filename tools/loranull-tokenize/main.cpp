// loranull-tokenize: documents on stdin to token ids on stdout, with an HF
// tokenizer.json (loranull/text), so that calibration data for loranull-build
// can be tokenized without Python. The contract (docs/loranull-tokenize.md) is
// the help text of options.hpp.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include <loranull/text.hpp>

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

/// The document of one jsonl line (line_number for messages).
std::string document_of_json(const std::string& line, const std::string& field, std::size_t line_number) {
    nlohmann::json value;
    try {
        value = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
        tool_fail("line ", line_number, ": not valid JSON: ", e.what());
    }
    if (value.is_string()) return value.get<std::string>();
    if (!value.is_object()) tool_fail("line ", line_number, ": expected a JSON object or string, got ", value.type_name());
    const auto it = value.find(field);
    if (it == value.end()) tool_fail("line ", line_number, ": the object has no field \"", field, "\"");
    if (!it->is_string()) tool_fail("line ", line_number, ": field \"", field, "\" is not a string (", it->type_name(), ")");
    return it->get<std::string>();
}

int run(const Options& o) {
    const text::Tokenizer tokenizer = load(o.model);
    std::ios::sync_with_stdio(false);
    std::string line, out;
    for (std::size_t number = 1; std::getline(std::cin, line); ++number) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (const std::size_t bad = text::first_invalid_utf8(line); bad != std::string::npos)
            tool_fail("line ", number, ": not valid UTF-8 (byte ", bad + 1, " of the line)");
        const std::string document = o.format == Format::lines ? line : document_of_json(line, o.field, number);
        out.clear();
        for (const std::int32_t id : tokenizer.encode(document, o.add_special_tokens)) {
            if (!out.empty()) out += ' ';
            out += std::to_string(id);
        }
        out += '\n';
        std::fwrite(out.data(), 1, out.size(), stdout);
    }
    if (std::fflush(stdout) != 0) tool_fail("cannot write the ids to stdout");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return run_tool("loranull-tokenize", [&] { return run(parse_options(argc, argv)); });
}
