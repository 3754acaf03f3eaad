#pragma once
// loranull-init's command line: the help text (the contract of
// docs/loranull-init.md) and the options it parses into.

#include <cmath>
#include <cstdint>
#include <string>

#include <loranull/core/types.hpp>

#include "../tool_options.hpp"

namespace loranull::tools::init {

inline constexpr const char* help_text = R"(loranull-init: LoRA initialisations (LoRA-Null, PiSSA, MiLoRA, CorDA, LoRA) of the
layers in a safetensors file, written as a safetensors file.

usage:
  loranull-init --weights W.safetensors (--activations X.safetensors | --covariance C.safetensors)
                --method M --rank R [--alpha A] [--seed S] --out OUT.safetensors
  loranull-init --help

options (each takes one value, as "--name value" or "--name=value"):
  --weights W.safetensors
      The layers. Every 2-D tensor named NAME.weight, of shape [m, n] (PyTorch
      layout: out x in), is a layer NAME; F32, F64, F16 or BF16. Other tensors
      (biases, 1-D norm weights, anything not ending in ".weight") are ignored
      and counted in a note on stderr. At least one layer must exist.
  --activations X.safetensors
      Calibration inputs: for every layer NAME a tensor NAME of shape [tokens, n]
      (one row per token's input to that layer). The covariance is
      C = X^T X / tokens (plain normalisation), accumulated in double.
  --covariance C.safetensors
      Instead of activations: for every layer NAME a tensor NAME of shape [n, n]
      (symmetric; the mean of x x^T over the calibration tokens).
      Methods that need data (corda-kpm, corda-ipm, lora-null, eva) need exactly one
      of --activations / --covariance, holding every layer; the other methods
      ignore them (with a note on stderr).
  --method M
      lora        A Kaiming-uniform U(-1/sqrt(n), 1/sqrt(n)) from --seed, B = 0,
                  residual = W (PEFT's default initialisation)
      pissa       the top-R singular triplets of W (exact thin SVD)
      pissa-fast  the same from a randomized SVD (4 power iterations, 10
                  oversamples, Gaussian test matrix from --seed)
      milora      the bottom-R singular triplets of W
      corda-kpm   CorDA knowledge-preserved: the last R triplets of W C (C from
                  knowledge data, damped until invertible)
      corda-ipm   CorDA instruction-previewed: the first R triplets (C from task data)
      lora-null   LoRA-Null: W P with P the projector on the R least-used input
                  directions (C's R smallest eigenvectors). v1 and v2 share this
                  initialisation; v2 freezes lora_A during training
                  (lora-null-v1 and lora-null-v2 are accepted as names of it).
      olora       OLoRA: thin QR of W, A = R[:R], B = Q[:, :R]
      eva         EVA: A = the top-R eigenvectors of C (task data), B = 0,
                  residual = W
  --rank R
      The LoRA rank, 1 <= R <= min(m, n) for every layer.
  --alpha A
      LoRA alpha, A > 0; the scale is s = A / R. Default A = R (s = 1).
  --seed S
      Seed of the random initialisations (lora, pissa-fast); default 0. The same
      seed gives the same bits.
  --out OUT.safetensors
      The result; for every layer NAME:
        NAME.lora_A.weight  [R, n]   down-projection A
        NAME.lora_B.weight  [m, R]   up-projection B
        NAME.weight         [m, n]   residual W_res, the frozen base weight from now on
      in the dtype of NAME.weight in W, such that W = W_res + s B A (up to that
      dtype's rounding). __metadata__ records format "loranull.init/1", method,
      rank, alpha, scale, seed, data and normalisation. OUT must differ from the
      inputs; it is written to OUT.tmp and renamed when complete.
  --help, -h
      This text.

Progress goes to stdout, one line per layer. Notes (ignored tensors or data)
and warnings (a rank-deficient covariance: more than R zero eigenvalues, so the
null space is not unique) go to stderr after a successful run. An error is the
only line on stderr, "loranull-init: error: ...", with exit status 2 (bad
command line) or 1 (bad files, shapes, NaN/Inf, failed computation); OUT is
not written then.

example (PyTorch layout in, PEFT-style names out):
  loranull-init --weights w.safetensors --activations x.safetensors \
                --method lora-null --rank 16 --out init.safetensors
)";

struct Options {
    std::string weights, activations, covariance, method, out;
    Index rank = 0;
    double alpha = 0;  // 0: not given (alpha = rank)
    std::uint64_t seed = 0;
};

/// Parses argv; prints --help and exits 0 when asked.
inline Options parse_options(int argc, char** argv) {
    CommandLine cl(help_text);
    for (const char* name : {"--weights", "--activations", "--covariance", "--method", "--rank", "--alpha", "--seed", "--out"})
        cl.value(name);
    cl.parse(argc, argv);
    Options o;
    o.weights = cl.required("--weights");
    o.method = cl.required("--method");
    o.out = cl.required("--out");
    cl.required("--rank");
    o.rank = cl.positive<Index>("--rank", 0);
    o.alpha = cl.positive_number("--alpha", 0);
    o.seed = cl.integer<std::uint64_t>("--seed", 0);
    o.activations = cl.get("--activations");
    o.covariance = cl.get("--covariance");
    if (!o.activations.empty() && !o.covariance.empty())
        throw UsageError("give --activations or --covariance, not both");
    return o;
}

}  // namespace loranull::tools::init
