#pragma once
// Reading the fields of tokenizer.json with messages that name the field's
// path in the file ("pre_tokenizer.pretokenizers[0].pattern"), so that a
// malformed or unsupported file says where it is wrong.

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include <loranull/core/error.hpp>

namespace loranull::text {

using Json = nlohmann::json;

inline constexpr const char* json_where = "text::Tokenizer";

/// A JSON file parsed, or a loranull::error naming the file and the parser's message.
inline Json read_json_file(const std::string& path, std::string_view what) {
    std::ifstream in(path, std::ios::binary);
    require(static_cast<bool>(in), json_where, "cannot open ", what, " ", path);
    std::stringstream bytes;
    bytes << in.rdbuf();
    try {
        return Json::parse(bytes.str());
    } catch (const Json::exception& e) {
        fail(json_where, what, " ", path, " is not valid JSON: ", e.what());
    }
}

/// The object's member `key` (null when absent).
inline const Json& member(const Json& object, std::string_view key, const std::string& path) {
    static const Json null_value;
    require(object.is_object(), json_where, path, " must be a JSON object, got ", object.type_name());
    const auto it = object.find(std::string(key));
    return it == object.end() ? null_value : *it;
}

inline std::string child_path(const std::string& path, std::string_view key) {
    return path.empty() ? std::string(key) : path + "." + std::string(key);
}

inline std::string string_field(const Json& object, std::string_view key, const std::string& path) {
    const Json& v = member(object, key, path);
    require(v.is_string(), json_where, child_path(path, key), " must be a string, got ", v.type_name());
    return v.get<std::string>();
}

inline bool bool_field(const Json& object, std::string_view key, const std::string& path, bool fallback) {
    const Json& v = member(object, key, path);
    if (v.is_null()) return fallback;
    require(v.is_boolean(), json_where, child_path(path, key), " must be true or false, got ", v.dump());
    return v.get<bool>();
}

inline std::int64_t integer_field(const Json& object, std::string_view key, const std::string& path) {
    const Json& v = member(object, key, path);
    require(v.is_number_integer(), json_where, child_path(path, key), " must be an integer, got ", v.dump());
    return v.get<std::int64_t>();
}

/// A token id: an integer in [0, 2^31).
inline std::int32_t id_value(const Json& v, const std::string& path) {
    require(v.is_number_integer() && v.get<std::int64_t>() >= 0 && v.get<std::int64_t>() <= INT32_MAX, json_where,
            path, " must be a token id (an integer in [0, 2^31)), got ", v.dump());
    return static_cast<std::int32_t>(v.get<std::int64_t>());
}

/// Calls add(component, its path) for each entry of a Sequence's list `key`
/// ("normalizers", "pretokenizers", "decoders", "processors").
template <class Add>
void for_each_in_sequence(const Json& spec, std::string_view key, const std::string& path, Add&& add) {
    const Json& list = member(spec, key, path);
    const std::string list_path = child_path(path, key);
    require(list.is_array(), json_where, list_path, " must be an array, got ", list.type_name());
    for (std::size_t i = 0; i < list.size(); ++i) add(list[i], list_path + "[" + std::to_string(i) + "]");
}

/// The "type" of a component, e.g. "BPE", "Sequence".
inline std::string type_of(const Json& component, const std::string& path) {
    return string_field(component, "type", path);
}

/// The pattern of Split/Replace: {"String": s} (a literal) or {"Regex": r}.
struct PatternSpec {
    bool is_regex = false;
    std::string text;
};

inline PatternSpec pattern_field(const Json& object, const std::string& path) {
    const Json& p = member(object, "pattern", path);
    const std::string where = child_path(path, "pattern");
    require(p.is_object() && p.size() == 1, json_where, where, " must be {\"String\": ...} or {\"Regex\": ...}, got ",
            p.dump());
    if (p.contains("String")) return {false, string_field(p, "String", where)};
    if (p.contains("Regex")) return {true, string_field(p, "Regex", where)};
    fail(json_where, where, " has an unknown kind ", p.begin().key(), " (expected String or Regex)");
}

}  // namespace loranull::text
