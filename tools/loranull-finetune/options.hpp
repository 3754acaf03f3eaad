#pragma once
// loranull-finetune's command line: the help text (the contract of
// docs/loranull-finetune.md) and the options it parses into.

#include <string>

#include <loranull/pipeline/finetune_options.hpp>

#include "../tool_options.hpp"

namespace loranull::tools::finetune {

inline constexpr const char* help_text = R"(loranull-finetune: train a PEFT LoRA adapter of a Hugging Face LLaMA-family model in C++
(the second step of build -> fine-tune -> eval), on the CPU, a GPU, or mpirun ranks.

usage:
  loranull-finetune --model DIR --adapter DIR --data FILE [--format text|prompt-response]
                    [--prompt-field NAME --response-field NAME] [--train A|B|AB] [--steps N]
                    [--epochs E] [--batch B] [--grad-accum K] [--seq-len T] [--lr LR]
                    [--warmup FRACTION] [--weight-decay W] [--seed S] [--device cpu|cuda]
                    [--save-every N] [--export plain] [--calib FILE | --calib-text FILE
                    [--calib-samples N] [--calib-seq-len T] [--calib-seed S]] --out DIR
  mpirun -np K loranull-finetune <the same options>
  loranull-finetune --help

options (each takes one value, as "--name value" or "--name=value"):
  --model DIR           HF checkpoint: loranull-build's OUT/model (the residual model), or the
                        unmodified base of any PEFT LoRA adapter
  --adapter DIR         PEFT LoRA adapter for that model (loranull-build's OUT/adapter)
  --data FILE           training data, tokenized with the model's tokenizer.json
  --format F            text (default): one document a line (.jsonl: objects with "text"),
                        packed into windows of T tokens, loss on every token;
                        prompt-response: JSONL objects, loss on the response tokens only,
                        prompt formatted with the official math fine-tuning template
  --prompt-field NAME   the prompt's field (default query)
  --response-field NAME the response's field (default response)
  --train A|B|AB        what trains: B is LoRA-Null v2 (A frozen; the default for an adapter
                        whose metadata says lora-null-v2), AB is v1 / plain LoRA (the default
                        otherwise), A trains A alone
  --steps N             optimizer steps (default: --epochs over the data)
  --epochs E            passes over the data (default 1; a fraction is allowed)
  --batch B             sequences per forward pass (default 4)
  --grad-accum K        micro-batches per optimizer step (default 1): global batch B x K,
                        shared by the mpirun ranks (K must be at least the rank count)
  --seq-len T           tokens per sequence (default min(512, max_position_embeddings))
  --lr LR               peak learning rate (default 2e-5, the paper's)
  --warmup FRACTION     linear warm-up, a fraction of the steps (default 0.03), then cosine to 0
  --weight-decay W      AdamW's decoupled weight decay (default 0)
  --seed S              the order of the examples (default 42)
  --device D            cpu (default) or cuda
  --save-every N        write a checkpoint every N steps (default 100; 0: only at the end);
                        a rerun with the same --out resumes from it, bit-identically
  --export plain        also write OUT/adapter-plain: the rank-2r adapter for the unmodified
                        base model (SPEC.md section 6)
  --calib FILE          token ids [samples, seq_len] (safetensors input_ids), or
  --calib-text FILE     calibration text: after training, the knowledge report (SPEC.md
                        section 4) on it, per layer; with --train B the bound is checked in
                        every module. Give data the build did not use (another --calib-seed)
  --calib-samples N     sequences of the report (default all ids, or 16 windows of text)
  --calib-seq-len T     tokens each (default all, or the text default of loranull-build)
  --calib-seed S        the windows drawn from --calib-text (default 1)
  --out DIR             the run's folder: adapter/, loss.csv, loss.png, finetune.json,
                        checkpoint/ while running
  --help, -h            this text

AdamW (betas 0.9, 0.999, eps 1e-8), global gradient-norm clipping at 1, float32 adapters and
optimizer state. Progress on stderr (loss, tokens/s, ETA); stdout: the first and last loss and
what was written. Errors: one line "loranull-finetune: error: ..." on stderr, exit 2 (command
line) or 1 (files, data).
)";

inline pipeline::FinetuneOptions parse_options(int argc, char** argv) {
    CommandLine cl(help_text);
    for (const char* name : {"--model", "--adapter", "--data", "--format", "--prompt-field", "--response-field",
                             "--train", "--steps", "--epochs", "--batch", "--grad-accum", "--seq-len", "--lr",
                             "--warmup", "--weight-decay", "--seed", "--device", "--save-every", "--export", "--calib",
                             "--calib-text", "--calib-samples", "--calib-seq-len", "--calib-seed", "--out",
                             "--stop-after-steps"})
        cl.value(name);
    cl.parse(argc, argv);
    pipeline::FinetuneOptions o;
    o.model = cl.required("--model");
    o.adapter = cl.required("--adapter");
    o.data = cl.required("--data");
    o.out = cl.required("--out");
    const std::string format = cl.get("--format", "text");
    if (format == "text")
        o.format = pipeline::FinetuneFormat::text;
    else if (format == "prompt-response")
        o.format = pipeline::FinetuneFormat::prompt_response;
    else
        throw UsageError("--format must be text or prompt-response, got '" + format + "'");
    if ((cl.has("--prompt-field") || cl.has("--response-field")) && o.format != pipeline::FinetuneFormat::prompt_response)
        throw UsageError("--prompt-field and --response-field describe --format prompt-response");
    o.prompt_field = cl.get("--prompt-field", o.prompt_field);
    o.response_field = cl.get("--response-field", o.response_field);
    o.train = cl.get("--train");
    if (!o.train.empty() && o.train != "A" && o.train != "B" && o.train != "AB")
        throw UsageError("--train must be A, B or AB, got '" + o.train + "'");
    if (cl.has("--steps") && cl.has("--epochs")) throw UsageError("give --steps or --epochs, not both");
    o.steps = cl.positive<long>("--steps", 0);
    o.epochs = cl.positive_number("--epochs", 1.0);
    o.batch = cl.positive<Index>("--batch", o.batch);
    o.grad_accum = cl.positive<Index>("--grad-accum", o.grad_accum);
    o.seq_len = cl.positive<Index>("--seq-len", 0);
    if (cl.has("--seq-len") && o.seq_len < 2) throw UsageError("--seq-len must be at least 2, got " + cl.get("--seq-len"));
    o.lr = cl.positive_number("--lr", o.lr);
    o.warmup = cl.number("--warmup", o.warmup);
    if (!(o.warmup >= 0 && o.warmup < 1)) throw UsageError("--warmup must be a fraction in [0, 1), got '" + cl.get("--warmup") + "'");
    o.weight_decay = cl.number("--weight-decay", o.weight_decay);
    if (!(o.weight_decay >= 0 && std::isfinite(o.weight_decay)))
        throw UsageError("--weight-decay must be a number >= 0, got '" + cl.get("--weight-decay") + "'");
    o.seed = cl.integer<std::uint64_t>("--seed", o.seed);
    o.device = cl.get("--device", "cpu");
    if (o.device != "cpu" && o.device != "cuda") throw UsageError("--device must be cpu or cuda, got '" + o.device + "'");
    o.save_every = cl.integer<long>("--save-every", o.save_every);
    if (o.save_every < 0) throw UsageError("--save-every must be 0 or more, got " + cl.get("--save-every"));
    o.stop_after_steps = cl.positive<long>("--stop-after-steps", 0);
    const std::string exported = cl.get("--export", "residual");
    if (exported != "plain" && exported != "residual")
        throw UsageError("--export must be plain (or residual, the default), got '" + exported + "'");
    o.export_plain = exported == "plain";
    o.calib = cl.get("--calib");
    o.calib_text = cl.get("--calib-text");
    if (!o.calib.empty() && !o.calib_text.empty()) throw UsageError("give one of --calib and --calib-text");
    if ((cl.has("--calib-samples") || cl.has("--calib-seq-len") || cl.has("--calib-seed")) && !o.has_calibration())
        throw UsageError("--calib-samples, --calib-seq-len and --calib-seed describe --calib or --calib-text");
    if (cl.has("--calib-seed") && o.calib_text.empty()) throw UsageError("--calib-seed describes --calib-text");
    o.calib_samples = cl.positive<Index>("--calib-samples", 0);
    o.calib_seq_len = cl.positive<Index>("--calib-seq-len", 0);
    o.calib_seed = cl.integer<std::uint64_t>("--calib-seed", o.calib_seed);
    return o;
}

}  // namespace loranull::tools::finetune
