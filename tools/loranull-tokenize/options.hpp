#pragma once
// loranull-tokenize's command line: the help text (the contract of
// docs/loranull-tokenize.md) and the options it parses into.

#include <string>

#include <loranull/text/documents.hpp>

#include "../tool_options.hpp"

namespace loranull::tools::tokenize {

inline constexpr const char* help_text = R"(loranull-tokenize: text to token ids with a Hugging Face tokenizer (tokenizer.json,
model BPE: LLaMA 2/3/3.1/3.2, Mistral, Qwen2), the ids the Rust tokenizers
library computes.

usage:
  loranull-tokenize --model DIR [--format lines|jsonl] [--field NAME] [--no-bos] < IN > OUT
  loranull-tokenize --help

options (each value as "--name value" or "--name=value"):
  --model DIR
      An HF model folder with tokenizer.json (and tokenizer_config.json, read
      as transformers reads it: bos_token, eos_token, and for LlamaTokenizer
      add_bos_token / add_eos_token), or the path of a tokenizer.json file
      itself (the file alone, as the Rust library reads it). A folder with
      only tokenizer.model (SentencePiece) is refused: convert it first.
  --format lines|jsonl
      lines (default): every line of stdin is one document ("\n" ends a line;
      a "\r" before it is dropped; a last line without "\n" counts; an empty
      line is an empty document).
      jsonl: every line is one JSON value: an object whose field NAME is a
      string (the document), or a bare JSON string. Blank lines are errors.
  --field NAME
      The field of each JSON object holding the text (jsonl only); default text.
  --no-bos
      Encode without the special tokens of the post-processor (no BOS, no
      EOS): the ids of the text alone.
  --help, -h
      This text.

Output: one line per document on stdout, its ids in decimal separated by one
space (an empty document gives BOS alone, or an empty line with --no-bos).
Special tokens written in the text (e.g. <|eot_id|>, </s>) are recognised.

Errors: one line on stderr, "loranull-tokenize: error: ...", naming the input
line for bad input (invalid UTF-8, invalid JSON, a missing or non-string
field); exit status 2 for a bad command line, 1 for a bad model folder or
bad input. Lines before a bad line have been written to stdout by then.

example:
  echo 'Hello world' | loranull-tokenize --model Meta-Llama-3-8B
  128000 9906 1917
)";

struct Options {
    std::string model, field = "text";
    text::DocumentFormat format = text::DocumentFormat::lines;
    bool add_special_tokens = true;
};

/// Parses argv; prints --help and exits 0 when asked.
inline Options parse_options(int argc, char** argv) {
    CommandLine cl(help_text);
    cl.value("--model").value("--format").value("--field").flag("--no-bos");
    cl.parse(argc, argv);
    Options o;
    o.model = cl.required("--model");
    const std::string format = cl.get("--format", "lines");
    if (format == "lines") o.format = text::DocumentFormat::lines;
    else if (format == "jsonl") o.format = text::DocumentFormat::jsonl;
    else throw UsageError("--format must be lines or jsonl, got '" + format + "'");
    if (cl.has("--field") && o.format != text::DocumentFormat::jsonl) throw UsageError("--field applies to --format jsonl only");
    o.field = cl.get("--field", "text");
    o.add_special_tokens = !cl.has("--no-bos");
    return o;
}

}  // namespace loranull::tools::tokenize
