#pragma once
// What a fine-tuning run (loranull-finetune, docs/loranull-finetune.md)
// depends on, the schedule it derives from that, and the settings record a
// resumed run must match.

#include <cmath>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "loranull/core/types.hpp"
#include "loranull/lora/lora_linear.hpp"
#include "loranull/pipeline/build_options.hpp"
#include "loranull/pipeline/finetune_data.hpp"

namespace loranull::pipeline {

inline constexpr const char* finetune_format = "loranull.finetune/1";

struct FinetuneOptions {
    std::string model;    // HF folder: the residual model (loranull-build's OUT/model) or any base
    std::string adapter;  // PEFT LoRA folder for that model
    std::string data;     // training text or JSONL prompt/response pairs
    std::string out;      // the run's folder: checkpoint/, adapter/, loss.csv, loss.png, finetune.json
    FinetuneFormat format = FinetuneFormat::text;
    std::string prompt_field = "query", response_field = "response";  // MetaMathQA's names
    std::string train;    // "A", "B" or "AB"; empty: B for a lora-null-v2 adapter, AB otherwise
    long steps = 0;       // optimizer steps; 0: from epochs
    double epochs = 1;
    Index batch = 4;      // sequences per forward pass (a micro-batch)
    Index grad_accum = 1; // micro-batches per optimizer step: the global batch is batch x grad_accum
    Index seq_len = 0;    // 0: min(512, max_position_embeddings, sliding_window)
    double lr = 2e-5;     // the paper's peak rate
    double warmup = 0.03; // of the steps, linear; then cosine to 0
    double weight_decay = 0;
    double clip_norm = 1;
    std::uint64_t seed = 42;  // the order of the examples, one permutation per epoch
    std::string device = "cpu";
    long save_every = 100;      // steps between checkpoints (0: none before the end)
    long stop_after_steps = 0;  // testing: stop (exit 3) after this step, checkpoint written
    bool export_plain = false;  // also write OUT/adapter-plain: the rank-2r adapter for the unmodified base
    // The knowledge report (SPEC.md section 4) after training, on held-out
    // calibration text or ids read as loranull-eval reads them; none: no report.
    std::string calib, calib_text, calib_format, calib_field = "text";
    Index calib_samples = 0, calib_seq_len = 0;
    std::uint64_t calib_seed = 1;

    bool has_calibration() const { return !calib.empty() || !calib_text.empty(); }
};

/// --train as a Trainable; `adapter_method` (the adapter's loranull.method
/// metadata) decides the default: lora-null-v2 freezes A.
inline Trainable trainable_of(const std::string& train, const std::string& adapter_method) {
    if (train.empty()) return adapter_method == "lora-null-v2" ? Trainable::B_only : Trainable::both;
    if (train == "A") return Trainable::A_only;
    if (train == "B") return Trainable::B_only;
    if (train == "AB") return Trainable::both;
    refuse_request("--train must be A, B or AB, got '", train, "'");
}

inline const char* trainable_name(Trainable t) {
    return t == Trainable::A_only ? "A" : t == Trainable::B_only ? "B" : "AB";
}

/// The step plan: how many optimizer steps, the warm-up, and which examples
/// each micro-batch of each step takes.
struct FinetuneSchedule {
    Index examples = 0, global_batch = 0, batch = 0, grad_accum = 0;
    long steps_per_epoch = 0, steps = 0, warmup_steps = 0;

    FinetuneSchedule(const FinetuneOptions& o, Index example_count)
        : examples(example_count), global_batch(o.batch * o.grad_accum), batch(o.batch), grad_accum(o.grad_accum) {
        if (examples < global_batch)
            refuse_input("--data ", o.data, ": ", examples, " example(s) of at most ", o.seq_len,
                         " tokens, fewer than one batch of --batch ", o.batch, " x --grad-accum ", o.grad_accum,
                         " = ", global_batch, " needs (more data, or a smaller batch)");
        steps_per_epoch = static_cast<long>((examples + global_batch - 1) / global_batch);
        steps = o.steps > 0 ? o.steps : std::max(1L, static_cast<long>(std::ceil(o.epochs * double(steps_per_epoch))));
        warmup_steps = static_cast<long>(std::ceil(o.warmup * double(steps)));  // transformers' get_warmup_steps
    }
};

}  // namespace loranull::pipeline
