#pragma once
// The calibration data of a build: token ids from a safetensors file with one
// tensor "input_ids" of shape [samples, seq_len] (I32 or I64), as written by
// tokenising a corpus into fixed-length windows (the reference: 256 x 2048 of
// NQ-open, SPEC.md section 1). Every id is checked against the model's
// vocabulary and every length against its config before any work starts.

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "loranull/io/safetensors.hpp"
#include "loranull/llama/config.hpp"
#include "loranull/pipeline/build_options.hpp"

namespace loranull::pipeline {

/// Sequences the model computes exactly: at most max_position_embeddings,
/// and at most the sliding window (Mistral, Qwen2), checked before any work.
inline void check_sequence_length(Index seq_len, const LlamaConfig& config, const std::string& where,
                                  const std::string& model) {
    if (seq_len > config.max_seq_len)
        refuse_input(where, ": sequences of ", seq_len, " tokens exceed max_position_embeddings = ", config.max_seq_len,
                     " of ", model, "/config.json (use --seq-len)");
    if (config.sliding_window > 0 && seq_len > config.sliding_window)
        refuse_input(where, ": sequences of ", seq_len, " tokens exceed the sliding_window of ", config.sliding_window,
                     " of ", model, "/config.json (windowed attention is not implemented; use --seq-len ",
                     config.sliding_window, " or less)");
}

/// The default calibration length of text windows: the reference's 2048 where
/// the model computes it exactly.
inline Index default_text_seq_len(const LlamaConfig& config) {
    Index t = std::min<Index>(2048, config.max_seq_len);
    if (config.sliding_window > 0) t = std::min(t, config.sliding_window);
    return t;
}

struct CalibrationTokens {
    std::vector<std::int32_t> tokens;  // samples * seq_len ids, sequence after sequence
    Index samples = 0, seq_len = 0;
    std::string hash;                  // of the file's bytes (the build's settings record it)
    nlohmann::json source;             // where they came from, for report.json and the adapter's metadata

    Index count() const { return samples * seq_len; }
};

/// The first `samples` sequences (0: all) and their first `seq_len` tokens (0:
/// all) of `path`'s input_ids, checked against `config` (read from `model`).
inline CalibrationTokens read_calibration_tokens(const std::string& path, Index samples, Index seq_len,
                                                 const LlamaConfig& config, const std::string& model) {
    const std::string where = "--calib " + path;
    const io::SafetensorsReader file(path);
    if (!file.contains("input_ids"))
        refuse_input(where, ": no tensor 'input_ids' (expected token ids [samples, seq_len], I32 or I64; the file has ",
                     file.tensors().size(), " tensor(s))");
    const io::TensorInfo& info = file.info("input_ids");
    if (info.dtype != io::Dtype::I32 && info.dtype != io::Dtype::I64)
        refuse_input(where, ": tensor 'input_ids' has dtype ", io::dtype_name(info.dtype), ", expected I32 or I64");
    if (info.shape.size() != 2 || info.shape[0] < 1 || info.shape[1] < 1)
        refuse_input(where, ": tensor 'input_ids' has shape ", nlohmann::json(info.shape).dump(),
                     ", expected [samples, seq_len] with both >= 1");
    const Index file_samples = info.shape[0], file_seq = info.shape[1];
    CalibrationTokens out;
    out.samples = samples ? samples : file_samples;
    out.seq_len = seq_len ? seq_len : file_seq;
    if (out.samples > file_samples)
        refuse_input("--samples ", out.samples, " exceeds the ", file_samples, " sequences of 'input_ids' in ", path);
    if (out.seq_len > file_seq)
        refuse_input("--seq-len ", out.seq_len, " exceeds the sequence length ", file_seq, " of 'input_ids' in ", path);
    check_sequence_length(out.seq_len, config, where, model);
    const std::vector<std::int64_t> ids = file.read_integers("input_ids");
    out.tokens.reserve(static_cast<std::size_t>(out.count()));
    for (Index s = 0; s < out.samples; ++s)
        for (Index t = 0; t < out.seq_len; ++t) {
            const std::int64_t id = ids[static_cast<std::size_t>(s * file_seq + t)];
            if (id < 0 || id >= config.vocab_size)
                refuse_input(where, ": input_ids[", s, ", ", t, "] = ", id, " is outside the vocabulary (vocab_size ",
                             config.vocab_size, " in ", model, "/config.json)");
            out.tokens.push_back(static_cast<std::int32_t>(id));
        }
    out.hash = file_hash(path);
    out.source = {{"file", path}, {"hash", out.hash}, {"format", "input_ids"}, {"windows", out.samples},
                  {"seq_len", out.seq_len}};
    return out;
}

}  // namespace loranull::pipeline
