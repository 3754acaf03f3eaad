#pragma once
// loranull-build's command line: the help text (the contract of
// docs/loranull-build.md) and its translation into pipeline::BuildOptions.

#include <cmath>
#include <cstdint>
#include <string>

#include <loranull/pipeline/build_options.hpp>

#include "../tool_options.hpp"
#include "build_device.hpp"

namespace loranull::tools::build {

inline constexpr const char* help_text = R"(loranull-build: LoRA-Null (or CorDA, PiSSA, MiLoRA, LoRA) adapters for a Hugging Face
LLaMA checkpoint, computed block by block with bounded memory.

usage:
  loranull-build --model DIR --method M --rank R --out DIR
                 [--calib TOKENS.safetensors | --calib-text FILE [--format lines|jsonl] [--text-field NAME]]
                 [--alpha A] [--seed S] [--samples N] [--seq-len T] [--batch B]
                 [--layers LIST] [--normalisation plain|reference] [--accumulate fp64|fp32-panels] [--dtype f32|bf16|f16]
                 [--export residual|plain] [--device cpu|cuda] [--allow-rank-deficient]
                 [--hidden-on-host] [--save-covariances] [--keep-blocks]
  mpirun -np K loranull-build <the same options>
  loranull-build --help

options (each takes one value, as "--name value" or "--name=value", except the flags):
  --model DIR        HF LLaMA checkpoint: config.json and model.safetensors, or shards
                     listed in model.safetensors.index.json; F32, F16, BF16 or F64.
  --calib FILE       calibration token ids: a safetensors file with a tensor
                     "input_ids" of shape [samples, seq_len], I32 or I64. Needed by
                     lora-null, corda-kpm, corda-ipm, eva; optional for the weight-only
                     methods (then it only feeds the knowledge report).
  --calib-text FILE  calibration text instead of ids: one document per line
                     (--format lines) or JSONL (--format jsonl: an object per line
                     with its text in --text-field, default "text", or a bare JSON
                     string); the format defaults to jsonl for .jsonl/.json files,
                     lines otherwise. Tokenized with the model's own tokenizer.json,
                     each document without special tokens, joined with EOS, cut
                     into chunks of T - 1 tokens; N chunks drawn without
                     replacement (--seed), each window = BOS + its chunk. Defaults
                     N = 256 (--samples), T = min(2048, max_position_embeddings,
                     sliding_window) (--seq-len). Too little text is an error.
  --method M         lora-null, corda-kpm, corda-ipm, pissa, pissa-fast, milora, lora,
                     olora, eva (lora-null-v1 and lora-null-v2 name lora-null's
                     initialisation too)
  --rank R           LoRA rank (1 <= R <= min(out, in) of every projection)
  --alpha A          LoRA alpha (scale s = A / R); default A = R (s = 1)
  --seed S           seed of the random initialisations (lora, pissa-fast) and of
                     the windows drawn from --calib-text; default 0
  --samples N        use the first N calibration sequences (default: all; with
                     --calib-text: N windows, default 256)
  --seq-len T        use the first T tokens of each sequence (default: all; with
                     --calib-text: windows of T tokens)
  --batch B          sequences per forward chunk (default: 4096 tokens' worth)
  --layers LIST      blocks to adapt, e.g. "0-3,7" (default: all)
  --normalisation X  covariance normalisation: plain (mean of x x^T, default) or
                     reference (each sample scaled by 1/|max|, divided by 256)
  --accumulate A     how float activations reach the double covariances: fp64
                     (default: every product in double, exact) or fp32-panels
                     (each chunk's X X^T in float at ?ssyrk speed, summed in
                     double: about twice as fast; the knowledge bound to 1e-3
                     while the null space's eigenvalues stay 1000x above the
                     float rounding, warned otherwise, but not the exact
                     subspace; docs/math.md, "Accumulation")
  --dtype D          storage type of the outputs: f32, bf16 or f16 (default: each
                     tensor keeps the checkpoint's dtype). Computation is float
                     (forward) and double (covariances, decompositions), rounded last.
  --export E         residual (default): OUT/model (the residual model, same
                     sharding as the input) + OUT/adapter (PEFT adapter for it);
                     plain: only OUT/adapter, a rank-2R adapter for the unmodified
                     base (SPEC.md section 6; its product is zero at initialisation)
  --device D         cpu (default) or cuda: the whole build on GPU 0 (weights, hidden
                     states, covariances and decompositions on the device; only the
                     outputs come back); under mpirun, one GPU per rank and the
                     covariances summed by NCCL. Needs a binary built with nvcc; not
                     yet run on a GPU.
  --hidden-on-host   keep the hidden states (dim x tokens floats) in host memory and
                     move one batch at a time to the device: for calibrations whose
                     hidden states do not fit the GPU (the same numbers, slower)
  --allow-rank-deficient   continue when the calibration has fewer tokens than a
                     projection has inputs (covariance rank-deficient; warned)
  --save-covariances write each block's four covariances to OUT/covariances/
  --keep-blocks      keep OUT/blocks/ after the outputs are assembled
  --help, -h         this text

OUT must be empty or absent, or hold a run of this tool with the same settings:
then finished blocks are skipped (resume). Progress (with an ETA) goes to stderr;
the per-layer report (energy fraction of the adapter's input space and the SPEC.md
section 4 bound) to stdout and OUT/report.json. Errors: one line on stderr, exit 2
(command line) or 1 (files, data), nothing half-written.

Under mpirun (a binary built with MPI) each of the K ranks forwards its share of the
samples, the covariances are summed onto the rank that decomposes each block, and
rank 0 writes every file: the outputs are those of one process. A failure on any
rank ends every rank with the same error line.
)";

/// Parses argv into the builder's options; prints --help and exits 0 when
/// asked. Checks what the command line alone decides (syntax, numbers, the
/// names of enumerations); the builder checks the rest against the files.
inline pipeline::BuildOptions parse_options(int argc, char** argv) {
    CommandLine cl(help_text);
    for (const char* name : {"--model", "--calib", "--calib-text", "--format", "--text-field", "--method", "--rank",
                             "--out", "--alpha", "--seed", "--samples",
                             "--seq-len", "--batch", "--layers", "--normalisation", "--accumulate", "--dtype", "--export", "--device",
                             "--stop-after-blocks"})
        cl.value(name);
    for (const char* name : {"--allow-rank-deficient", "--save-covariances", "--keep-blocks", "--hidden-on-host"})
        cl.flag(name);
    cl.parse(argc, argv);
    const std::string device = cl.get("--device", "cpu");
    if (device != "cpu" && device != "cuda") throw UsageError("--device must be cpu or cuda, got '" + device + "'");
    if (device == "cuda" && !has_cuda_builder())
        throw UsageError("--device cuda: this loranull-build was built without CUDA (nvcc was not found when CMake "
                         "configured the build); use --device cpu");
    pipeline::BuildOptions o;
    o.device = device;
    o.model = cl.required("--model");
    o.method = cl.required("--method");
    o.out = cl.required("--out");
    cl.required("--rank");
    o.rank = cl.positive<Index>("--rank", 0);
    if (!find_method(o.method)) throw UsageError(unknown_method_message(o.method));
    o.calib = cl.get("--calib");
    o.calib_text = cl.get("--calib-text");
    o.text_format = cl.get("--format");
    o.text_field = cl.get("--text-field", "text");
    o.alpha = cl.positive_number("--alpha", 0);
    o.seed = cl.integer<std::uint64_t>("--seed", 0);
    o.samples = cl.positive<Index>("--samples", 0);
    o.seq_len = cl.positive<Index>("--seq-len", 0);
    o.batch = cl.positive<Index>("--batch", 0);
    o.layers = cl.get("--layers", "all");
    const std::string normalisation = cl.get("--normalisation", "plain");
    if (normalisation != "plain" && normalisation != "reference")
        throw UsageError("--normalisation must be plain or reference, got '" + normalisation + "'");
    o.normalisation = parse_normalisation(normalisation);
    const std::string accumulate = cl.get("--accumulate", "fp64");
    if (accumulate != "fp64" && accumulate != "fp32-panels")
        throw UsageError("--accumulate must be fp64 or fp32-panels, got '" + accumulate + "'");
    o.accumulation = parse_accumulation(accumulate);
    if (cl.has("--dtype")) {
        const std::string d = cl.get("--dtype");
        if (d == "f32") o.dtype = io::Dtype::F32;
        else if (d == "bf16") o.dtype = io::Dtype::BF16;
        else if (d == "f16") o.dtype = io::Dtype::F16;
        else throw UsageError("--dtype must be f32, bf16 or f16, got '" + d + "'");
    }
    const std::string exported = cl.get("--export", "residual");
    if (exported != "residual" && exported != "plain")
        throw UsageError("--export must be residual or plain, got '" + exported + "'");
    o.export_plain = exported == "plain";
    o.allow_rank_deficient = cl.has("--allow-rank-deficient");
    o.save_covariances = cl.has("--save-covariances");
    o.keep_blocks = cl.has("--keep-blocks");
    o.hidden_on_host = cl.has("--hidden-on-host");
    o.stop_after_blocks = cl.integer<Index>("--stop-after-blocks", -1);
    return o;
}

}  // namespace loranull::tools::build
