#pragma once
// Calibration from text (loranull-build --calib-text): documents tokenized
// with the model's own tokenizer and packed into N windows of T tokens.
//
//   1. documents   one a line, plain text or JSONL (text/documents.hpp); the
//                  format from --format, else from the extension (.jsonl and
//                  .json: JSONL, anything else: lines)
//   2. tokens      each document encoded without special tokens; documents
//                  joined into one stream with the tokenizer's EOS between
//                  them when it has one (a document boundary, as in pretraining)
//   3. windows     the stream cut into consecutive chunks of T - 1 tokens (T
//                  when the tokenizer has no BOS); N of the chunks drawn
//                  without replacement (seeded), kept in stream order; each
//                  window is BOS + its chunk, as the reference's loader starts
//                  every sample with BOS
//
// Fewer than N chunks is an error saying how many tokens the text gave and
// how many N x T needs. The window count, length, seed, the tokens, the
// documents and the file's hash are recorded (report.json, the adapter's
// metadata, build.json for resumption).

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "loranull/core/random.hpp"
#include "loranull/llama/config.hpp"
#include "loranull/pipeline/build_options.hpp"
#include "loranull/pipeline/calibration_tokens.hpp"
#include "loranull/text/documents.hpp"
#include "loranull/text/tokenizer.hpp"

namespace loranull::pipeline {

/// "jsonl" for FILE.jsonl / FILE.json, else "lines" (an explicit format wins).
inline text::DocumentFormat text_format_of(const std::string& path, const std::string& format) {
    if (format == "jsonl") return text::DocumentFormat::jsonl;
    if (format == "lines") return text::DocumentFormat::lines;
    if (!format.empty()) refuse_request("--format must be lines or jsonl, got '", format, "'");
    const auto dot = path.rfind('.');
    const std::string extension = dot == std::string::npos ? "" : path.substr(dot);
    return extension == ".jsonl" || extension == ".json" ? text::DocumentFormat::jsonl : text::DocumentFormat::lines;
}

/// N windows of T tokens from the documents of `path` (see the top of this file).
inline CalibrationTokens read_calibration_text(const std::string& path, const std::string& format,
                                               const std::string& field, Index samples, Index seq_len,
                                               std::uint64_t seed, const text::Tokenizer& tokenizer,
                                               const LlamaConfig& config, const std::string& model) {
    const std::string where = "--calib-text " + path;
    check_sequence_length(seq_len, config, where, model);
    const auto bos = tokenizer.bos_id(), eos = tokenizer.eos_id();
    const Index chunk = bos ? seq_len - 1 : seq_len;
    if (chunk < 1) refuse_request("--seq-len ", seq_len, " leaves no text after BOS: use at least 2");
    std::ifstream in(path, std::ios::binary);
    if (!in) refuse_input(where, ": cannot open the file");
    const text::DocumentFormat fmt = text_format_of(path, format);

    std::vector<std::int32_t> stream;
    Index documents = 0;
    text::read_documents(in, fmt, field, where + ": ", [&](std::string&& document, std::size_t) {
        if (documents > 0 && eos) stream.push_back(*eos);
        const std::vector<std::int32_t> ids = tokenizer.encode(document, /*add_special_tokens=*/false);
        stream.insert(stream.end(), ids.begin(), ids.end());
        ++documents;
    });
    const Index chunks = static_cast<Index>(stream.size()) / chunk;
    if (chunks < samples)
        refuse_input(where, ": ", samples, " windows of ", seq_len, " tokens need at least ", samples * chunk,
                     " tokens of text", bos ? " (plus a BOS each)" : "", "; the ", documents, " document(s) give ",
                     stream.size(), " (use fewer --samples, a shorter --seq-len or more text)");

    // N of the chunks, without replacement, in stream order: a seeded partial
    // Fisher-Yates shuffle of the chunk indices, then sorted.
    std::vector<Index> order(static_cast<std::size_t>(chunks));
    std::iota(order.begin(), order.end(), Index(0));
    Rng rng(seed);
    for (Index i = 0; i < samples; ++i) {
        const Index j = i + static_cast<Index>(rng.next_u64() % static_cast<std::uint64_t>(chunks - i));
        std::swap(order[static_cast<std::size_t>(i)], order[static_cast<std::size_t>(j)]);
    }
    order.resize(static_cast<std::size_t>(samples));
    std::sort(order.begin(), order.end());

    CalibrationTokens out;
    out.samples = samples;
    out.seq_len = seq_len;
    out.tokens.reserve(static_cast<std::size_t>(samples * seq_len));
    for (Index c : order) {
        if (bos) out.tokens.push_back(*bos);
        const auto begin = stream.begin() + c * chunk;
        out.tokens.insert(out.tokens.end(), begin, begin + chunk);
    }
    for (std::int32_t id : out.tokens)
        if (id < 0 || id >= config.vocab_size)
            refuse_input(where, ": the tokenizer of ", model, " gives id ", id, ", outside vocab_size ",
                         config.vocab_size, " of its config.json");
    out.hash = file_hash(path);
    out.source = {{"file", path},
                  {"hash", out.hash},
                  {"format", fmt == text::DocumentFormat::jsonl ? "jsonl" : "lines"},
                  {"documents", documents},
                  {"text_tokens", stream.size()},
                  {"windows", samples},
                  {"seq_len", seq_len},
                  {"seed", seed},
                  {"bos", bos ? nlohmann::json(*bos) : nlohmann::json(nullptr)},
                  {"eos_between_documents", eos ? nlohmann::json(*eos) : nlohmann::json(nullptr)},
                  {"packing", "chunks of seq_len - 1 tokens (seq_len without BOS) drawn without replacement, BOS first"}};
    if (fmt == text::DocumentFormat::jsonl) out.source["field"] = field;
    return out;
}

/// The calibration of a build or an evaluation: token ids (--calib) or text
/// (--calib-text, defaults N = 256 windows of default_text_seq_len), from the
/// options' fields; the one reader loranull-build and loranull-eval share.
inline CalibrationTokens read_calibration(const BuildOptions& o, const LlamaConfig& config) {
    if (!o.calib_text.empty())
        return read_calibration_text(o.calib_text, o.text_format, o.text_field, o.samples ? o.samples : 256,
                                     o.seq_len ? o.seq_len : default_text_seq_len(config), o.seed,
                                     text::Tokenizer::from_folder(o.model), config, o.model);
    return read_calibration_tokens(o.calib, o.samples, o.seq_len, config, o.model);
}

/// Sequences per forward chunk: --batch, or 4096 tokens' worth.
inline Index default_batch(Index batch, const CalibrationTokens& c) {
    return batch ? std::min(batch, c.samples) : std::clamp<Index>(4096 / c.seq_len, 1, c.samples);
}

}  // namespace loranull::pipeline
