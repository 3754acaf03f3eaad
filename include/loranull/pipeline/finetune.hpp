#pragma once
// Finetuner: a PEFT LoRA adapter trained on a Hugging Face checkpoint
// (loranull-finetune, docs/loranull-finetune.md), on any backend, in one
// process or as one rank of many:
//
//   1. the model with the adapter attached (W_res = the checkpoint's weight,
//      A and B as read; --train decides which of them train)
//   2. per optimizer step, batch x grad_accum examples of the epoch's
//      permutation (seeded); micro-batch j goes to rank j mod ranks; each
//      rank weighs its micro-batches' gradients by their share of the step's
//      scored tokens (the mean over the whole global batch, as transformers'
//      Trainer normalises by num_items_in_batch), the weighted sums are added
//      over the ranks in double on rank 0 and broadcast: every rank takes the
//      same AdamW step (global-norm clipping, cosine schedule with linear
//      warm-up: llama/train.hpp, the experiment's optimizer)
//   3. every save_every steps rank 0 writes OUT/checkpoint/state.safetensors
//      (the factors, AdamW's moments and step, the loss history, the settings
//      hash) atomically; a rerun with the same settings continues from it and
//      computes the same bits as a run that was never stopped (the data
//      position is the step: the order is a function of the seed and epoch)
//   4. at the end rank 0 writes OUT/adapter (PEFT: the trained A, B and the
//      lora_alpha that keeps each module's scale), OUT/adapter-plain with
//      export_plain, OUT/loss.csv, and OUT/finetune.json last (the report:
//      its presence marks the run finished), then removes the checkpoint.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "loranull/core/random.hpp"
#include "loranull/io/atomic_file.hpp"
#include "loranull/io/gnuplot.hpp"
#include "loranull/io/hf_checkpoint.hpp"
#include "loranull/io/peft.hpp"
#include "loranull/io/peft_adapter.hpp"
#include "loranull/io/safetensors.hpp"
#include "loranull/io/safetensors_writer.hpp"
#include "loranull/llama/model.hpp"
#include "loranull/llama/train.hpp"
#include "loranull/parallel/communicator.hpp"
#include "loranull/pipeline/build_settings.hpp"
#include "loranull/pipeline/finetune_data.hpp"
#include "loranull/pipeline/finetune_options.hpp"
#include "loranull/pipeline/finetune_report.hpp"

namespace loranull::pipeline {

/// What the tool shows while a run goes (rank 0's callbacks; others get none).
struct FinetuneProgress {
    std::function<void(long total, long done)> start;
    std::function<void(long done, const std::string& note)> step;
    std::function<void(const std::string& line)> note;
};

struct FinetuneResult {
    bool stopped = false;           // stop_after_steps reached (checkpoint written)
    bool already_finished = false;  // OUT holds a finished run with these settings
    nlohmann::json report;          // finetune.json
};

/// One optimizer step's record (loss.csv).
struct StepRecord {
    double loss = 0;       // mean cross-entropy over the step's scored tokens, nats
    double lr = 0;
    double grad_norm = 0;  // before clipping
    double tokens = 0;     // positions computed (padding included)
    double seconds = 0;
};

/// The micro-batches of `step`: examples of the epoch's permutation, batch by batch.
inline std::vector<std::vector<std::size_t>> step_micro_batches(const FinetuneSchedule& s, std::uint64_t seed, long step) {
    const long epoch = step / s.steps_per_epoch, within = step % s.steps_per_epoch;
    std::vector<std::size_t> order(static_cast<std::size_t>(s.examples));
    std::iota(order.begin(), order.end(), std::size_t(0));
    Rng rng(seed ^ (0x9E3779B97F4A7C15ull * std::uint64_t(epoch + 1)));
    for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.next_u64() % i]);  // Fisher-Yates
    std::vector<std::vector<std::size_t>> micro(static_cast<std::size_t>(s.grad_accum));
    const std::size_t first = std::size_t(within) * std::size_t(s.global_batch);
    for (std::size_t j = 0; j < micro.size(); ++j)
        for (std::size_t i = 0; i < std::size_t(s.batch); ++i)
            if (const std::size_t at = first + j * std::size_t(s.batch) + i; at < order.size()) micro[j].push_back(order[at]);
    return micro;
}

template <class Bk, class Comm = parallel::SingleProcess>
class Finetuner {
public:
    using T = float;
    using Matrix = matrix_t<Bk, T>;

    Finetuner(Bk& backend, Comm& comm, const FinetuneOptions& options, const FinetuneData& data,
              FinetuneProgress progress = {})
        : b_(backend), comm_(comm), o_(options), data_(data), progress_(std::move(progress)) {}

    FinetuneResult run() {
        namespace fs = std::filesystem;
        const bool root = comm_.rank() == 0;
        const fs::path out(o_.out), state_path = out / "checkpoint" / "state.safetensors", marker = out / "finetune.json";
        // 1. The adapter, the settings, and what OUT already holds.
        // As PEFT loads it: the trained adapter keeps the input's config.
        const io::PeftAdapter adapter = io::read_peft_adapter(o_.adapter, io::PeftCheck::as_peft_loads);
        const std::string method = adapter_method(o_.adapter);
        const Trainable trainable = trainable_of(o_.train, method);
        const FinetuneSchedule schedule(o_, Index(data_.examples.size()));
        io::HfCheckpointReader checkpoint(o_.model, "--model " + o_.model);
        const nlohmann::json settings = settings_json(checkpoint, trainable, schedule);
        const std::string settings_hash = text_hash(settings.dump());
        FinetuneResult result;
        if (fs::exists(marker)) {
            const nlohmann::json done = read_json(marker);
            if (done.value("settings_hash", "") == settings_hash) {
                result.already_finished = true;
                result.report = done;
                return result;
            }
            refuse_request("--out ", o_.out, " holds a finished fine-tuning run with other settings: use another "
                           "--out, or remove it");
        }
        // 2. The model, with the adapter on it.
        LlamaModel<Bk, T> model = io::load_hf_checkpoint<T>(b_, o_.model);
        io::attach_peft_adapter(model, adapter, trainable, method);
        model.zero_grad();
        std::vector<ParameterRef<Matrix>> params = trainable_parameters(model);
        AdamW<Bk, T> optimizer(AdamWConfig{.weight_decay = o_.weight_decay, .clip_norm = o_.clip_norm});
        std::vector<StepRecord> history;
        if (fs::exists(state_path)) restore(state_path, settings_hash, model, optimizer, history);
        const long first_step = static_cast<long>(history.size());
        if (root && progress_.start) progress_.start(schedule.steps, first_step);
        if (root && progress_.note && first_step > 0)
            progress_.note("resuming " + o_.out + " at step " + std::to_string(first_step) + " of " +
                           std::to_string(schedule.steps));

        // 3. The steps.
        std::size_t flat_size = 0;
        for (const auto& p : params) flat_size += std::size_t(p.value->size());
        for (long step = first_step; step < schedule.steps; ++step) {
            const auto started = std::chrono::steady_clock::now();
            const auto micro = step_micro_batches(schedule, o_.seed, step);
            Index step_scored = 0;
            for (const auto& m : micro)
                for (std::size_t i : m) step_scored += data_.examples[i].scored();
            // The weighted gradients of this rank's micro-batches, then the
            // step's loss sum and positions: summed over the ranks in double.
            HostMatrix<double> flat(Index(flat_size + 2), 1);
            for (std::size_t j = 0; j < micro.size(); ++j) {
                if (int(j % std::size_t(comm_.size())) != comm_.rank() || micro[j].empty()) continue;
                const TokenBatch batch = make_batch(data_, micro[j]);
                model.zero_grad();
                const double loss = model.loss(batch.tokens, batch.targets, batch.seq_len);
                model.backward();
                const double weight = double(batch.scored) / double(step_scored);
                std::size_t at = 0;
                for (auto& p : params) {
                    const HostMatrix<T> g = b_.download(*p.grad);
                    for (Index i = 0; i < g.size(); ++i) flat.data()[at + std::size_t(i)] += weight * double(g.data()[i]);
                    at += std::size_t(g.size());
                }
                flat.data()[flat_size] += loss * double(batch.scored);
                flat.data()[flat_size + 1] += double(batch.tokens.size());
            }
            const HostMatrix<double> summed = sum_over_ranks(flat);
            std::vector<Matrix> grads;
            grads.reserve(params.size());
            std::size_t at = 0;
            for (auto& p : params) {
                HostMatrix<T> g(p.value->rows(), p.value->cols());
                for (Index i = 0; i < g.size(); ++i) g.data()[i] = static_cast<T>(summed.data()[at + std::size_t(i)]);
                at += std::size_t(g.size());
                grads.push_back(b_.upload(g));
            }
            std::vector<ParameterRef<Matrix>> step_params = params;
            for (std::size_t i = 0; i < params.size(); ++i) step_params[i].grad = &grads[i];
            StepRecord record;
            record.lr = cosine_lr(step, schedule.steps, schedule.warmup_steps, o_.lr);
            try {
                record.grad_norm = optimizer.step(b_, step_params, record.lr);
            } catch (const error&) {
                refuse_input("step ", step + 1, ": the gradient is not finite (NaN or Inf: a learning rate too high, "
                             "or a bad checkpoint or adapter)");
            }
            record.loss = summed.data()[flat_size] / double(step_scored);
            record.tokens = summed.data()[flat_size + 1];
            if constexpr (requires { b_.synchronize(); }) b_.synchronize();
            record.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
            history.push_back(record);
            const long done = step + 1;
            if (root && progress_.step) progress_.step(done, step_note(history));
            const bool stop_here = o_.stop_after_steps > 0 && done == o_.stop_after_steps && done < schedule.steps;
            if (root && done < schedule.steps && ((o_.save_every > 0 && done % o_.save_every == 0) || stop_here))
                save(state_path, settings_hash, model, optimizer, history);
            if (stop_here) {
                result.stopped = true;
                return result;
            }
        }

        // 4. The outputs (rank 0), the report last.
        if (!root) return result;
        nlohmann::json knowledge = nullptr;
        if (o_.has_calibration()) {
            if (progress_.note) progress_.note("the knowledge report on the calibration data");
            knowledge = knowledge_after_training(b_, model, o_);
        }
        write_adapters(model, out, method, trainable);
        write_loss_csv(out / "loss.csv", history);
        io::plot_png(out / "loss.png", io::png_header() +
                                           "set datafile separator ','\nset xlabel 'step'\nset ylabel 'loss (nats/token)'\n"
                                           "set title 'loranull-finetune'\n"
                                           "plot 'loss.csv' skip 1 using 1:2 with lines title 'training loss'\n");
        result.report = report_json(settings, settings_hash, schedule, history, knowledge, trainable, method);
        io::write_text_atomically(marker, result.report.dump(2) + "\n");
        std::error_code ec;
        fs::remove_all(out / "checkpoint", ec);
        return result;
    }

private:
    /// The adapter's loranull.method metadata ("lora-null-v2", ...; empty when absent).
    static std::string adapter_method(const std::string& dir) {
        const io::SafetensorsReader file(std::filesystem::path(dir) / "adapter_model.safetensors");
        const auto it = file.metadata().find("loranull.method");
        return it == file.metadata().end() ? std::string() : it->second;
    }

    static nlohmann::json read_json(const std::filesystem::path& path) {
        std::ifstream in(path);
        try {
            return nlohmann::json::parse(in);
        } catch (const nlohmann::json::exception& e) {
            refuse_input(path.string(), " is not valid JSON (", e.what(), "): remove it to start over");
        }
    }

    static std::vector<ParameterRef<Matrix>> trainable_parameters(LlamaModel<Bk, T>& model) {
        std::vector<ParameterRef<Matrix>> out;
        for (auto& p : model.parameters())
            if (p.grad) out.push_back(p);
        require(!out.empty(), "Finetuner", "nothing trains");
        return out;
    }

    nlohmann::json settings_json(io::HfCheckpointReader& checkpoint, Trainable trainable,
                                 const FinetuneSchedule& schedule) const {
        nlohmann::json s = nlohmann::json::object();
        s["format"] = finetune_format;
        record_checkpoint(s, checkpoint);
        s["adapter_config"] = file_hash(std::filesystem::path(o_.adapter) / "adapter_config.json");
        s["adapter_weights"] = file_hash(std::filesystem::path(o_.adapter) / "adapter_model.safetensors");
        nlohmann::json data = data_.source;
        data.erase("file");  // the same data elsewhere resumes
        s["data"] = data;
        s["train"] = trainable_name(trainable);
        s["steps"] = schedule.steps;
        s["batch"] = o_.batch;
        s["grad_accum"] = o_.grad_accum;
        s["lr"] = o_.lr;
        s["warmup"] = o_.warmup;
        s["weight_decay"] = o_.weight_decay;
        s["clip_norm"] = o_.clip_norm;
        s["seed"] = o_.seed;
        s["device"] = o_.device;
        s["export"] = o_.export_plain ? "plain" : "residual";
        return s;
    }

    /// flat summed over the ranks in double, identical on every rank.
    HostMatrix<double> sum_over_ranks(HostMatrix<double> flat) {
        if (comm_.size() == 1) return flat;
        auto on_backend = b_.upload(flat);
        comm_.sum_to(b_, on_backend, 0);
        std::string bytes;
        if (comm_.rank() == 0) {
            const HostMatrix<double> host = b_.download(on_backend);
            bytes.assign(reinterpret_cast<const char*>(host.data()), std::size_t(host.size()) * sizeof(double));
        }
        comm_.broadcast(bytes, 0);
        require(bytes.size() == std::size_t(flat.size()) * sizeof(double), "Finetuner", "a broadcast of ", bytes.size(),
                " bytes, expected ", std::size_t(flat.size()) * sizeof(double));
        std::copy(bytes.begin(), bytes.end(), reinterpret_cast<char*>(flat.data()));
        return flat;
    }

    static std::string step_note(const std::vector<StepRecord>& history) {
        const StepRecord& r = history.back();
        char text[128];
        std::snprintf(text, sizeof text, "loss %.4f, lr %.3g, %.0f tokens/s", r.loss, r.lr,
                      r.seconds > 0 ? r.tokens / r.seconds : 0.0);
        return text;
    }

    // --- the checkpoint -----------------------------------------------------

    static nlohmann::json history_json(const std::vector<StepRecord>& history) {
        nlohmann::json h = nlohmann::json::array();
        for (const StepRecord& r : history) h.push_back({r.loss, r.lr, r.grad_norm, r.tokens, r.seconds});
        return h;
    }

    void save(const std::filesystem::path& path, const std::string& settings_hash, LlamaModel<Bk, T>& model,
              const AdamW<Bk, T>& optimizer, const std::vector<StepRecord>& history) const {
        std::filesystem::create_directories(path.parent_path());
        io::SafetensorsWriter w;
        w.set_metadata("format", finetune_format);
        w.set_metadata("settings_hash", settings_hash);
        w.set_metadata("steps", std::to_string(optimizer.steps()));
        w.set_metadata("history", history_json(history).dump());
        for (const auto& p : model.parameters())
            if (p.name.find(".lora_") != std::string::npos) w.add(p.name, b_.download(*p.value), io::Dtype::F32);
        const auto& moments = optimizer.moments();
        for (std::size_t i = 0; i < moments.size(); ++i) {
            w.add("adamw." + std::to_string(i) + ".m", b_.download(moments[i].m), io::Dtype::F32);
            w.add("adamw." + std::to_string(i) + ".v", b_.download(moments[i].v), io::Dtype::F32);
        }
        w.write(path);
    }

    void restore(const std::filesystem::path& path, const std::string& settings_hash, LlamaModel<Bk, T>& model,
                 AdamW<Bk, T>& optimizer, std::vector<StepRecord>& history) const {
        const io::SafetensorsReader file(path);
        const auto meta = [&](const std::string& key) {
            const auto it = file.metadata().find(key);
            if (it == file.metadata().end())
                refuse_input(path.string(), " has no ", key, ": not a loranull-finetune checkpoint (remove it to start over)");
            return it->second;
        };
        if (meta("settings_hash") != settings_hash)
            refuse_request("--out ", o_.out, " holds a checkpoint of a run with other settings: use another --out, "
                           "or rerun with the settings it was started with");
        for (const auto& p : model.parameters())
            if (p.name.find(".lora_") != std::string::npos) *p.value = b_.upload(file.read_matrix<T>(p.name));
        const long steps = std::stol(meta("steps"));
        std::vector<typename AdamW<Bk, T>::Moments> moments;
        for (std::size_t i = 0; file.contains("adamw." + std::to_string(i) + ".m"); ++i)
            moments.push_back({b_.upload(file.read_matrix<T>("adamw." + std::to_string(i) + ".m")),
                               b_.upload(file.read_matrix<T>("adamw." + std::to_string(i) + ".v"))});
        optimizer.restore(steps, std::move(moments));
        for (const auto& r : nlohmann::json::parse(meta("history")))
            history.push_back({r.at(0), r.at(1), r.at(2), r.at(3), r.at(4)});
        require(long(history.size()) == steps, "Finetuner", path.string(), ": ", history.size(), " steps of history for ",
                steps, " optimizer steps");
    }

    // --- the outputs --------------------------------------------------------

    void write_adapters(LlamaModel<Bk, T>& model, const std::filesystem::path& out, const std::string& method,
                        Trainable trainable) const {
        auto export_to = [&](io::PeftMode mode, const std::filesystem::path& dir, const std::string& base) {
            io::PeftExportOptions options;
            options.mode = mode;
            options.write_residual = false;  // the residual weights are --model's own
            options.base_model_name_or_path = base;
            io::PeftExporter<Bk> exporter(b_, options);
            for (Index l = 0; l < model.config.n_layers; ++l)
                for (ProjectionKind kind : all_projections)
                    if (const auto& p = model.blocks[std::size_t(l)][kind]; p.lora)
                        exporter.add("model.layers." + std::to_string(l) + "." + projection_path(kind), *p.lora);
            // The method names the residual adapter's initialisation; the plain
            // one is a conversion (its A is [A; A0], no null space): named apart,
            // so that fine-tuning it again does not default to --train B.
            exporter.set_metadata(mode == io::PeftMode::residual ? "loranull.method" : "loranull.converted_from", method);
            exporter.set_metadata("loranull.train", trainable_name(trainable));
            exporter.set_metadata("loranull.data", data_.source.dump());
            exporter.write(dir);
        };
        export_to(io::PeftMode::residual, out / "adapter", o_.model);
        if (o_.export_plain) export_to(io::PeftMode::plain, out / "adapter-plain", "");
    }

    static void write_loss_csv(const std::filesystem::path& path, const std::vector<StepRecord>& history) {
        std::string csv = "step,loss,lr,grad_norm,tokens,seconds\n";
        char line[256];
        for (std::size_t i = 0; i < history.size(); ++i) {
            const StepRecord& r = history[i];
            std::snprintf(line, sizeof line, "%zu,%.9g,%.9g,%.9g,%.0f,%.6f\n", i + 1, r.loss, r.lr, r.grad_norm, r.tokens,
                          r.seconds);
            csv += line;
        }
        io::write_text_atomically(path, csv);
    }

    nlohmann::json report_json(const nlohmann::json& settings, const std::string& settings_hash,
                               const FinetuneSchedule& schedule, const std::vector<StepRecord>& history,
                               const nlohmann::json& knowledge, Trainable trainable, const std::string& method) const {
        double seconds = 0, tokens = 0;
        for (const StepRecord& r : history) {
            seconds += r.seconds;
            tokens += r.tokens;
        }
        nlohmann::json r = nlohmann::json::object();
        r["format"] = finetune_format;
        r["settings_hash"] = settings_hash;
        r["settings"] = settings;
        r["model"] = o_.model;
        r["adapter"] = o_.adapter;
        r["method"] = method;
        r["train"] = trainable_name(trainable);
        r["data"] = data_.source;
        r["steps"] = schedule.steps;
        r["warmup_steps"] = schedule.warmup_steps;
        r["steps_per_epoch"] = schedule.steps_per_epoch;
        r["global_batch"] = schedule.global_batch;
        r["ranks"] = comm_.size();
        r["first_loss"] = history.front().loss;
        r["last_loss"] = history.back().loss;
        r["tokens_per_second"] = seconds > 0 ? tokens / seconds : 0.0;
        r["train_seconds"] = seconds;
        r["peak_memory_bytes"] = peak_memory_bytes();
        r["knowledge"] = knowledge;
        return r;
    }

    Bk& b_;
    Comm& comm_;
    const FinetuneOptions& o_;
    const FinetuneData& data_;
    FinetuneProgress progress_;
};

}  // namespace loranull::pipeline
