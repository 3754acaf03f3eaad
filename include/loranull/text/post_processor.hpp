#pragma once
// What encode(text, add_special_tokens = true) adds around the model's ids:
// tokenizer.json's "post_processor" when it is TemplateProcessing (its
// "single" template: special tokens and $A), ByteLevel (offsets only: no
// change to the ids) or a Sequence of those. Others (BertProcessing,
// RobertaProcessing, ...) are refused by name.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <loranull/text/json_fields.hpp>

namespace loranull::text {

/// The single-sequence template: ids before $A, then ids after it.
struct Template {
    std::vector<std::int32_t> before, after;
    bool has_sequence = true;

    void apply(std::vector<std::int32_t>& ids) const {
        ids.insert(ids.begin(), before.begin(), before.end());
        ids.insert(ids.end(), after.begin(), after.end());
    }

    /// From tokenizer.json's "post_processor" (null: nothing added).
    static Template from_json(const Json& spec, const std::string& path = "post_processor") {
        Template t;
        if (!spec.is_null()) t.add(spec, path);
        return t;
    }

private:
    void add(const Json& spec, const std::string& path) {
        const std::string type = type_of(spec, path);
        if (type == "ByteLevel") return;  // trims offsets; ids unchanged
        if (type == "Sequence") {
            for_each_in_sequence(spec, "processors", path, [&](const Json& c, const std::string& p) { add(c, p); });
            return;
        }
        require(type == "TemplateProcessing", json_where, path, ": post_processor type ", type,
                " is not supported (supported: TemplateProcessing, ByteLevel, Sequence)");
        require(before.empty() && after.empty(), json_where, path, ": more than one TemplateProcessing");
        const Json& single = member(spec, "single", path);
        const Json& specials = member(spec, "special_tokens", path);
        require(single.is_array(), json_where, path, ".single must be an array");
        has_sequence = false;
        for (std::size_t i = 0; i < single.size(); ++i) {
            const std::string where = path + ".single[" + std::to_string(i) + "]";
            const Json& piece = single[i];
            if (piece.is_object() && piece.contains("Sequence")) {
                const std::string id = string_field(piece["Sequence"], "id", where + ".Sequence");
                require(id == "A" && !has_sequence, json_where, where, ": the single template takes $A once, got $", id);
                has_sequence = true;
                continue;
            }
            require(piece.is_object() && piece.contains("SpecialToken"), json_where, where,
                    " must be {\"SpecialToken\": ...} or {\"Sequence\": ...}, got ", piece.dump());
            const std::string name = string_field(piece["SpecialToken"], "id", where + ".SpecialToken");
            const Json& entry = member(specials, name, path + ".special_tokens");
            require(!entry.is_null(), json_where, where, ": special token ", name, " is not in ", path, ".special_tokens");
            const Json& ids = member(entry, "ids", path + ".special_tokens." + name);
            require(ids.is_array(), json_where, path, ".special_tokens.", name, ".ids must be an array");
            for (const Json& id : ids)
                (has_sequence ? after : before).push_back(id_value(id, path + ".special_tokens." + name + ".ids"));
        }
        require(has_sequence, json_where, path, ".single has no $A");
    }
};

}  // namespace loranull::text
