#pragma once
// Documents from a text stream, one a line, as loranull-tokenize and
// loranull-build --calib-text read them:
//
//   lines   every line is one document ("\n" ends a line, a "\r" before it is
//           dropped, a last line without "\n" counts, an empty line is an
//           empty document)
//   jsonl   every line is one JSON value: an object whose field NAME is a
//           string (the document), or a bare JSON string; blank lines are errors
//
// Every line must be valid UTF-8. A bad line is a loranull::error whose
// message is addressed to the user and names the line: "<source>line 3: not
// valid JSON: ..." (source: "" for stdin, "--calib-text FILE: " for a file).

#include <cstddef>
#include <functional>
#include <istream>
#include <string>

#include <nlohmann/json.hpp>

#include "loranull/core/error.hpp"
#include "loranull/text/utf8.hpp"

namespace loranull::text {

enum class DocumentFormat { lines, jsonl };

/// Calls on_document(document, line_number) for every document of `in`.
inline void read_documents(std::istream& in, DocumentFormat format, const std::string& field, const std::string& source,
                           const std::function<void(std::string&&, std::size_t)>& on_document) {
    auto bad = [&](std::size_t line, auto&&... parts) {
        throw error(loranull::detail::concat(source, "line ", line, ": ", parts...));
    };
    std::string line;
    for (std::size_t number = 1; std::getline(in, line); ++number) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (const std::size_t at = first_invalid_utf8(line); at != std::string::npos)
            bad(number, "not valid UTF-8 (byte ", at + 1, " of the line)");
        if (format == DocumentFormat::lines) {
            on_document(std::move(line), number);
            continue;
        }
        nlohmann::json value;
        try {
            value = nlohmann::json::parse(line);
        } catch (const nlohmann::json::exception& e) {
            bad(number, "not valid JSON: ", e.what());
        }
        if (value.is_string()) {
            on_document(value.get<std::string>(), number);
            continue;
        }
        if (!value.is_object()) bad(number, "expected a JSON object or string, got ", value.type_name());
        const auto it = value.find(field);
        if (it == value.end()) bad(number, "the object has no field \"", field, "\"");
        if (!it->is_string()) bad(number, "field \"", field, "\" is not a string (", it->type_name(), ")");
        on_document(it->get<std::string>(), number);
    }
}

}  // namespace loranull::text
