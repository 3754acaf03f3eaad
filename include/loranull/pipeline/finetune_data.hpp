#pragma once
// Training examples for loranull-finetune, tokenized with the model's own
// tokenizer (docs/loranull-finetune.md, "Data"):
//
//   text             one document a line (a .jsonl/.json file: JSON objects
//                    with a "text" field, or strings); documents encoded
//                    without special tokens and joined with EOS; the stream
//                    cut into consecutive chunks of T - 1 tokens, each window
//                    BOS + chunk (as --calib-text packs them, but every chunk,
//                    none drawn). Loss on every token: target t is token t + 1
//                    of the window, the last position predicts nothing.
//   prompt-response  JSONL, one object a line with a prompt and a response
//                    field. The official math fine-tuning's formatting: the
//                    source is alpaca_prompt with the prompt in it, the target
//                    the response + "\n" + EOS; the example is
//                    encode(source + target) with the tokenizer's specials
//                    (BOS), truncated to T tokens, and the first
//                    len(encode(source)) tokens carry no loss (labels -100 in
//                    the reference). An example whose response is truncated
//                    away entirely is dropped (counted in the source record).
//
// Every example's targets use nn.hpp's ignore_target for "no loss". Examples
// of one micro-batch are padded to the longest of them (pad: EOS, or 0; never
// scored, and causal attention keeps it from changing earlier positions).

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "loranull/backend/nn.hpp"
#include "loranull/llama/config.hpp"
#include "loranull/pipeline/build_options.hpp"
#include "loranull/pipeline/calibration_text.hpp"
#include "loranull/text/documents.hpp"
#include "loranull/text/tokenizer.hpp"

namespace loranull::pipeline {

/// The source template of prompt-response examples ({prompt} is replaced):
/// the prompt of the official LoRA-Null / PiSSA / CorDA math fine-tuning.
inline constexpr const char* alpaca_prompt =
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
    "\n\n### Instruction:\n{prompt}\n\n### Response:";

enum class FinetuneFormat { text, prompt_response };

struct FinetuneExample {
    std::vector<std::int32_t> tokens;   // the input ids, at most T
    std::vector<std::int32_t> targets;  // the same length: the next token, or ignore_target
    Index scored() const {
        return static_cast<Index>(std::count_if(targets.begin(), targets.end(), [](std::int32_t t) { return t != ignore_target; }));
    }
};

struct FinetuneData {
    std::vector<FinetuneExample> examples;
    std::int32_t pad_id = 0;
    nlohmann::json source;  // what the examples came from (format, file, hash, counts, template)
};

/// One micro-batch as LlamaModel::loss takes it: the examples side by side,
/// each padded to seq_len.
struct TokenBatch {
    std::vector<std::int32_t> tokens, targets;
    Index seq_len = 0;
    Index sequences = 0;
    Index scored = 0;  // targets that are not ignore_target
};

inline TokenBatch make_batch(const FinetuneData& data, const std::vector<std::size_t>& which) {
    TokenBatch batch;
    for (std::size_t i : which) batch.seq_len = std::max<Index>(batch.seq_len, Index(data.examples[i].tokens.size()));
    for (std::size_t i : which) {
        const FinetuneExample& e = data.examples[i];
        batch.tokens.insert(batch.tokens.end(), e.tokens.begin(), e.tokens.end());
        batch.targets.insert(batch.targets.end(), e.targets.begin(), e.targets.end());
        batch.tokens.resize(std::size_t((batch.sequences + 1) * batch.seq_len), data.pad_id);
        batch.targets.resize(batch.tokens.size(), ignore_target);
        batch.scored += e.scored();
        ++batch.sequences;
    }
    return batch;
}

namespace detail {

inline std::string read_whole_file(const std::string& path, const std::string& where) {
    std::ifstream in(path, std::ios::binary);
    if (!in) refuse_input(where, ": cannot read the file");
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// Windows of T tokens (BOS + T - 1 of the EOS-joined stream), every one.
inline std::vector<FinetuneExample> text_windows(const std::string& bytes, const std::string& path, Index seq_len,
                                                 const text::Tokenizer& tokenizer, nlohmann::json& source) {
    const std::string where = "--data " + path;
    std::istringstream in(bytes);
    const auto bos = tokenizer.bos_id(), eos = tokenizer.eos_id();
    std::vector<std::int32_t> stream;
    std::size_t documents = 0;
    const text::DocumentFormat format = text_format_of(path, "");
    try {
        text::read_documents(in, format, "text", where + ": ", [&](std::string&& doc, std::size_t) {
            if (documents++ > 0 && eos) stream.push_back(*eos);
            const auto ids = tokenizer.encode(doc, false);
            stream.insert(stream.end(), ids.begin(), ids.end());
        });
    } catch (const BuildError&) {
        throw;
    } catch (const error& e) {
        refuse_input(e.what());
    }
    const Index chunk = bos ? seq_len - 1 : seq_len;
    if (chunk < 1) refuse_request("--seq-len ", seq_len, " leaves no text after BOS: use at least 2");
    std::vector<FinetuneExample> out;
    for (std::size_t at = 0; at + std::size_t(chunk) <= stream.size(); at += std::size_t(chunk)) {
        FinetuneExample e;
        if (bos) e.tokens.push_back(*bos);
        e.tokens.insert(e.tokens.end(), stream.begin() + std::ptrdiff_t(at), stream.begin() + std::ptrdiff_t(at + chunk));
        e.targets.assign(e.tokens.begin() + 1, e.tokens.end());
        e.targets.push_back(ignore_target);
        out.push_back(std::move(e));
    }
    source["documents"] = documents;
    source["text_tokens"] = stream.size();
    return out;
}

inline std::string string_field(const nlohmann::json& object, const std::string& field, const std::string& where,
                                std::size_t line) {
    const auto it = object.find(field);
    if (it == object.end())
        refuse_input(where, ": line ", line, ": the object has no field \"", field,
                     "\" (name the fields with --prompt-field and --response-field)");
    if (!it->is_string()) refuse_input(where, ": line ", line, ": field \"", field, "\" is not a string (", it->type_name(), ")");
    return it->get<std::string>();
}

/// JSONL prompt/response pairs, formatted and masked as the reference does.
inline std::vector<FinetuneExample> prompt_response_examples(const std::string& bytes, const std::string& path,
                                                             const std::string& prompt_field,
                                                             const std::string& response_field, Index seq_len,
                                                             const text::Tokenizer& tokenizer, nlohmann::json& source) {
    const std::string where = "--data " + path;
    const auto eos = tokenizer.eos_id();
    if (!eos) refuse_input(where, ": the model's tokenizer has no EOS token, which ends every response");
    std::istringstream in(bytes);
    std::string line;
    std::vector<FinetuneExample> out;
    std::size_t dropped = 0, lines = 0;
    const std::string prompt_template = alpaca_prompt;
    const std::size_t slot = prompt_template.find("{prompt}");
    for (std::size_t number = 1; std::getline(in, line); ++number) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos) continue;  // blank lines between records
        ++lines;
        if (const std::size_t at = text::first_invalid_utf8(line); at != std::string::npos)
            refuse_input(where, ": line ", number, ": not valid UTF-8 (byte ", at + 1, " of the line)");
        nlohmann::json value;
        try {
            value = nlohmann::json::parse(line);
        } catch (const nlohmann::json::exception& e) {
            refuse_input(where, ": line ", number, ": not valid JSON (", e.what(), ")");
        }
        if (!value.is_object()) refuse_input(where, ": line ", number, ": expected a JSON object, got ", value.type_name());
        const std::string prompt = string_field(value, prompt_field, where, number);
        const std::string response = string_field(value, response_field, where, number);
        std::string source_text = prompt_template;
        source_text.replace(slot, std::string("{prompt}").size(), prompt);
        const std::size_t masked = tokenizer.encode(source_text, true).size();
        std::vector<std::int32_t> ids = tokenizer.encode(source_text + response + "\n", true);
        ids.push_back(*eos);
        if (ids.size() > std::size_t(seq_len)) ids.resize(std::size_t(seq_len));  // truncation, as model_max_length
        FinetuneExample e;
        e.tokens = ids;
        e.targets.assign(ids.size(), ignore_target);
        for (std::size_t t = 0; t + 1 < ids.size(); ++t)
            if (t + 1 >= masked) e.targets[t] = ids[t + 1];  // label t + 1 is scored when it is past the source
        if (e.scored() == 0) {
            ++dropped;
            continue;
        }
        out.push_back(std::move(e));
    }
    source["records"] = lines;
    source["dropped_records"] = dropped;
    source["prompt_template"] = prompt_template;
    source["response_suffix"] = "\\n + EOS";
    source["prompt_field"] = prompt_field;
    source["response_field"] = response_field;
    return out;
}

}  // namespace detail

/// The examples of `path` (see the top of this file), at most T tokens each.
inline FinetuneData read_finetune_data(const std::string& path, FinetuneFormat format, const std::string& prompt_field,
                                       const std::string& response_field, Index seq_len,
                                       const text::Tokenizer& tokenizer, const LlamaConfig& config,
                                       const std::string& model) {
    const std::string where = "--data " + path;
    check_sequence_length(seq_len, config, where, model);
    const std::string bytes = detail::read_whole_file(path, where);
    FinetuneData data;
    data.source = {{"file", path},
                   {"hash", text_hash(bytes)},
                   {"format", format == FinetuneFormat::text ? "text" : "prompt-response"},
                   {"seq_len", seq_len}};
    data.examples = format == FinetuneFormat::text
                        ? detail::text_windows(bytes, path, seq_len, tokenizer, data.source)
                        : detail::prompt_response_examples(bytes, path, prompt_field, response_field, seq_len,
                                                           tokenizer, data.source);
    if (const auto eos = tokenizer.eos_id()) data.pad_id = *eos;
    for (const FinetuneExample& e : data.examples)
        for (std::int32_t id : e.tokens)
            if (id < 0 || id >= config.vocab_size)
                refuse_input(where, ": the tokenizer gave id ", id, ", outside the model's vocabulary of ",
                             config.vocab_size, " (a tokenizer of another model?)");
    Index scored = 0;
    for (const FinetuneExample& e : data.examples) scored += e.scored();
    data.source["examples"] = data.examples.size();
    data.source["scored_tokens"] = scored;
    if (data.examples.empty()) {
        if (format == FinetuneFormat::text)
            refuse_input(where, ": the text gives ", data.source.value("text_tokens", 0), " tokens, fewer than one window of ",
                         seq_len, " (--seq-len) needs");
        refuse_input(where, ": no prompt/response pair with a response inside --seq-len ", seq_len, " tokens (",
                     data.source.value("records", 0), " records read)");
    }
    return data;
}

}  // namespace loranull::pipeline
