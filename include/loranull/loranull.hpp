#pragma once
// loranull: LoRA-Null and the low-rank adaptation methods it is compared with,
// header-only. This umbrella header brings every module that needs no CUDA,
// bottom to top (arrows point down only):
//
//   core/      errors, index and scalar types, host matrices, seeded RNG
//   backend/   the primitive set (backend.hpp), the NN kernels (nn.hpp) and the
//              CPU backend (Eigen + OpenBLAS/LAPACKE). The CUDA backend lives in
//              backend/cuda/ and is included only from .cu files.
//   linalg/    covariance accumulator, symmetric eigensolvers, SVDs, null space
//   lora/      LoraLinear, every initialisation and their dispatch, the
//              knowledge-preservation report
//   llama/     the LLaMA model, its training, the calibration of its blocks
//   text/      Hugging Face tokenizers (tokenizer.json), documents from text/JSONL
//   io/        safetensors, covariance files, PEFT adapters, HF checkpoints
//   parallel/  communicators: one process, MPI, NCCL (the last two included on purpose)
//   pipeline/  the block-streamed adapter builder
//   (text/ and pipeline/ need PCRE2 and utf8proc: left out where their headers are not found)

#include "loranull/core/error.hpp"
#include "loranull/core/host_matrix.hpp"
#include "loranull/core/random.hpp"
#include "loranull/core/types.hpp"

#include "loranull/backend/backend.hpp"
#include "loranull/backend/cpu/cpu_backend.hpp"
#include "loranull/backend/nn.hpp"

#include "loranull/linalg.hpp"
#include "loranull/llama.hpp"
#include "loranull/lora.hpp"

#include "loranull/io.hpp"
#include "loranull/parallel.hpp"

// The tokenizers and the builder (which tokenizes --calib-text) need PCRE2 and
// utf8proc: included wherever their headers are (CMake links them when found).
#if __has_include(<pcre2.h>) && __has_include(<utf8proc.h>)
#include "loranull/pipeline.hpp"
#include "loranull/text.hpp"
#endif
