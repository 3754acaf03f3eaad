#pragma once
// loranull/text: Hugging Face tokenizers (tokenizer.json, model BPE) computing
// the ids the Rust `tokenizers` library computes: byte-level BPE (LLaMA 3.x,
// Qwen2) and SentencePiece-style BPE with byte fallback (LLaMA 2, Mistral).
// Needs PCRE2 (regex) and utf8proc (Unicode classes and normal forms).
// Namespace loranull::text. documents.hpp reads documents from text or JSONL.

#include "loranull/text/added_tokens.hpp"
#include "loranull/text/bpe.hpp"
#include "loranull/text/decoder.hpp"
#include "loranull/text/documents.hpp"
#include "loranull/text/normalizer.hpp"
#include "loranull/text/post_processor.hpp"
#include "loranull/text/pre_tokenizer.hpp"
#include "loranull/text/reference.hpp"
#include "loranull/text/regex.hpp"
#include "loranull/text/tokenizer.hpp"
#include "loranull/text/utf8.hpp"
