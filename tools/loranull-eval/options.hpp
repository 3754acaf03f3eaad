#pragma once
// loranull-eval's command line: the help text (the contract of
// docs/loranull-eval.md) and the options it parses into.

#include <cstdint>
#include <string>

#include <loranull/core/types.hpp>

#include "../tool_options.hpp"

namespace loranull::tools::eval {

inline constexpr const char* help_text = R"(loranull-eval: the next-token negative log-likelihood, perplexity and bits per token of a
Hugging Face LLaMA-family model, or of the model with a PEFT LoRA adapter merged in.

usage:
  loranull-eval --model DIR [--adapter DIR] (--calib TOKENS.safetensors | --calib-text FILE
                [--format lines|jsonl] [--text-field NAME] [--seed S]) [--samples N] [--seq-len T]
                [--batch B] [--logits-out FILE.safetensors]
  loranull-eval --help

options (each takes one value, as "--name value" or "--name=value"):
  --model DIR        HF checkpoint (LLaMA 2/3/3.1/3.2, Mistral, Qwen2): config.json and
                     model.safetensors or shards; F32, F16, BF16 or F64
  --adapter DIR      a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors),
                     merged as PEFT does: W + (lora_alpha / r) B A (use_rslora: / sqrt(r)),
                     alpha_pattern honoured. loranull-build's OUT/adapter on OUT/model
                     reproduces the original model.
  --calib FILE       token ids: a safetensors file with a tensor "input_ids"
                     [samples, seq_len], I32 or I64 (as for loranull-build)
  --calib-text FILE  or text, tokenized with the model's tokenizer.json and packed into
                     N windows of T tokens exactly as loranull-build --calib-text does
                     (docs/loranull-build.md; defaults N = 256, T = min(2048,
                     max_position_embeddings, sliding_window), windows drawn with
                     --seed, default 0)
  --samples N        the first N sequences (default: all), or N windows of text
  --seq-len T        the first T tokens of each (default: all; at least 2), or
                     windows of T tokens
  --batch B          sequences per forward pass (default: 4096 tokens' worth)
  --logits-out FILE  also write tensor "logits" [samples, seq_len, vocab] in F32
                     (row-major: sequence, position, vocabulary), streamed, atomically
  --help, -h         this text

Each sequence of T tokens gives T - 1 predictions (the logits at position t
score token t + 1); the mean is over all of them. stdout: one line
"sequences N x T, predictions P" and one line
"nll MEAN nats/token, perplexity PPL, bits/token BITS". Errors: one line
"loranull-eval: error: ..." on stderr, exit 2 (command line) or 1 (files, data).
)";

struct Options {
    std::string model, adapter, calib, calib_text, text_format, text_field, logits_out;
    Index samples = 0, seq_len = 0, batch = 0;  // 0: default
    std::uint64_t seed = 0;
};

inline Options parse_options(int argc, char** argv) {
    CommandLine cl(help_text);
    for (const char* name : {"--model", "--adapter", "--calib", "--calib-text", "--format", "--text-field", "--seed",
                             "--samples", "--seq-len", "--batch", "--logits-out"})
        cl.value(name);
    cl.parse(argc, argv);
    Options o;
    o.model = cl.required("--model");
    o.calib = cl.get("--calib");
    o.calib_text = cl.get("--calib-text");
    if (o.calib.empty() == o.calib_text.empty()) throw UsageError("give one of --calib and --calib-text");
    if ((cl.has("--format") || cl.has("--text-field") || cl.has("--seed")) && o.calib_text.empty())
        throw UsageError("--format, --text-field and --seed describe --calib-text: give --calib-text");
    o.text_format = cl.get("--format");
    o.text_field = cl.get("--text-field", "text");
    o.seed = cl.integer<std::uint64_t>("--seed", 0);
    o.adapter = cl.get("--adapter");
    o.logits_out = cl.get("--logits-out");
    o.samples = cl.positive<Index>("--samples", 0);
    o.seq_len = cl.positive<Index>("--seq-len", 0);
    o.batch = cl.positive<Index>("--batch", 0);
    if (cl.has("--seq-len") && o.seq_len < 2) throw UsageError("--seq-len must be at least 2 (one prediction), got " + cl.get("--seq-len"));
    return o;
}

}  // namespace loranull::tools::eval
