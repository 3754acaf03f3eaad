// loranull-pretrain: pretrains the experiment's small byte-level LLaMA on
// "knowledge" (the Jargon File + a generated knowledge base of facts) and
// writes it as a Hugging Face checkpoint with everything the experiment needs
// to regenerate its data:
//
//   OUT/config.json, OUT/model.safetensors   the model (HF LLaMA layout, F32)
//   OUT/facts.tsv                            the knowledge base (entity, attribute, value)
//   OUT/pretraining.json                     settings, data sizes, final metrics
//   OUT/loss.csv, OUT/loss.png               the training curve
//
// The shipped checkpoint (data/jargon-facts-llama) is exactly
//   loranull-pretrain --out data/jargon-facts-llama
// with the defaults below (see docs/results.md for its time on 2 cores).
//
// Everything goes to OUT.partial first and is renamed to OUT when complete.

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include <loranull/backend/cpu/cpu_backend.hpp>
#include <loranull/io/gnuplot.hpp>
#include <loranull/io/hf_checkpoint.hpp>

#include "cli.hpp"
#include "corpus.hpp"
#include "evaluate.hpp"
#include "training.hpp"

using namespace loranull;
using namespace experiment;
namespace fs = std::filesystem;

namespace {

const char* usage = R"(usage: loranull-pretrain --out DIR [options]

Pretrains the byte-level LLaMA of the knowledge-retention experiment.
  --out DIR            output folder (refused if it exists, unless --force)
  --text PATH          the Jargon File (default /usr/share/doc/jargon-text/jargon.txt.gz)
  --steps N            optimizer steps (default 5000)
  --batch N            sequences per step (default 32)
  --seq-len N          tokens per sequence (default 128)
  --lr X               peak learning rate (default 2e-3, cosine to 10%, 2% warm-up)
  --dim N --layers N --heads N --kv-heads N --hidden N
                       model shape (default 128, 4, 4, 2, 352; vocabulary 256 bytes)
  --entities N         knowledge-base entities, 2 facts each (default 200)
  --fact-fraction X    share of sequences made of facts (default 0.4)
  --seed N             one seed for weights, data order and facts (default 1)
  --force              replace an existing OUT
  --quiet              no progress bar
)";

}  // namespace

int main(int argc, char** argv) {
    try {
        const Args args(argc, argv,
                        {"--out", "--text", "--steps", "--batch", "--seq-len", "--lr", "--dim", "--layers", "--heads",
                         "--kv-heads", "--hidden", "--entities", "--fact-fraction", "--seed"},
                        {"--force", "--quiet"}, usage);
        require(args.has("--out"), "options", "--out DIR is required");
        const fs::path out = args.get("--out", "");
        const fs::path partial = out.string() + ".partial";
        require(!fs::exists(out) || args.flag("--force"), "options", out.string(),
                " exists (pass --force to replace it)");

        LlamaConfig config;
        config.dim = args.integer("--dim", 128, 8, 4096);
        config.n_layers = args.integer("--layers", 4, 1, 64);
        config.n_heads = args.integer("--heads", 4, 1, 64);
        config.n_kv_heads = args.integer("--kv-heads", 2, 1, 64);
        config.hidden_dim = args.integer("--hidden", 352, 8, 16384);
        config.vocab_size = 256;
        const Index seq_len = args.integer("--seq-len", 128, 8, 2048);
        config.max_seq_len = std::max<Index>(seq_len, 128);
        config.tied_embeddings = true;
        config.validate();

        Schedule schedule;
        schedule.steps = args.integer("--steps", 5000, 1, 10'000'000);
        schedule.peak_lr = args.real("--lr", 2e-3, 1e-6, 1.0);
        schedule.warmup_fraction = 0.02;
        schedule.adam.weight_decay = 0.01;
        const Index batch = args.integer("--batch", 32, 1, 4096);
        const Index entities = args.integer("--entities", 200, 1, 100000);
        const double fact_fraction = args.real("--fact-fraction", 0.4, 0.0, 1.0);
        const std::uint64_t seed = static_cast<std::uint64_t>(args.integer("--seed", 1, 0, 1L << 40));
        const std::string text_path = args.get("--text", default_text_path());
        const bool quiet = args.flag("--quiet");
        std::string command_line = "loranull-pretrain";
        for (int i = 1; i < argc; ++i) command_line += std::string(" ") + argv[i];

        const TextCorpus corpus = TextCorpus::load(text_path);
        const std::vector<Fact> facts = make_facts(seed, entities);
        std::printf("text: %s, %zu bytes -> %zu training + %zu held-out bytes after cleaning\n", text_path.c_str(),
                    corpus.raw_bytes, corpus.train.size(), corpus.held_out.size());
        std::printf("facts: %zu (%ld entities), e.g. \"%s\"\n", facts.size(), long(entities), facts[0].sentence().c_str());
        std::printf("model: dim %ld, %ld layers, %ld heads (%ld kv), hidden %ld, %lld parameters\n", long(config.dim),
                    long(config.n_layers), long(config.n_heads), long(config.n_kv_heads), long(config.hidden_dim),
                    static_cast<long long>(config.parameter_count()));

        CpuBackend cpu;
        LlamaModel<CpuBackend, float> model(cpu, config);
        model.init_random(seed);
        model.set_full_finetune(true);

        const auto held_out = held_out_text_batches(corpus, 64, seq_len, 16);
        const auto fact_prompts = fact_items(facts);
        Rng data_rng(seed ^ 0x5eed'da7aULL);
        std::ostringstream curve;
        curve << "step,train_loss_bits,held_out_bits_per_byte,fact_accuracy\n";
        const auto start = std::chrono::steady_clock::now();
        loranull::io::ProgressBar progress("pretraining", schedule.steps, 0, "steps", quiet);
        // Evaluate at every tenth of the run: the checkpoint's loss curve.
        const long chunks = std::min<long>(10, schedule.steps);
        const long every = std::max<long>(1, schedule.steps / chunks);
        double smoothed = 0;
        auto evaluate = [&](long step, double smoothed_loss) -> std::string {
            smoothed = smoothed_loss;
            if (step % every != 0 && step != schedule.steps) return {};
            const double bpb = bits_per_byte(model, held_out, seq_len);
            const double accuracy = exact_match(model, fact_prompts).accuracy;
            curve << step << ',' << smoothed_loss << ',' << bpb << ',' << accuracy << '\n';
            char buffer[96];
            std::snprintf(buffer, sizeof buffer, "train %.3f  held-out %.3f bits/byte  facts %.1f%%", smoothed_loss, bpb,
                          100 * accuracy);
            if (quiet) {
                std::printf("step %ld: %s\n", step, buffer);
                std::fflush(stdout);  // a log file is read while the run goes on
            }
            return buffer;
        };
        model.set_full_finetune(true);
        train(model, schedule, seq_len,
              [&](long) { return knowledge_batch(corpus, facts, batch, seq_len, fact_fraction, data_rng); }, progress,
              evaluate);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const double bpb = bits_per_byte(model, held_out, seq_len);
        const ExactMatch fact_result = exact_match(model, fact_prompts);
        std::printf("held-out text: %.3f bits/byte; facts recalled: %.1f%% of %zu; %.0f s (%.0f tokens/s)\n", bpb,
                    100 * fact_result.accuracy, facts.size(), seconds,
                    double(schedule.steps) * double(batch * seq_len) / seconds);

        fs::remove_all(partial);
        fs::create_directories(partial);
        io::save_hf_checkpoint(model, partial, io::Dtype::F32);
        std::ostringstream tsv;
        tsv << "entity\tattribute\tvalue\n";
        for (const Fact& f : facts) tsv << f.entity << '\t' << f.attribute << '\t' << f.value << '\n';
        loranull::io::write_text_atomically(partial / "facts.tsv", tsv.str());
        loranull::io::write_text_atomically(partial / "loss.csv", curve.str());
        nlohmann::json meta = {
            {"format", "loranull.pretraining/1"},
            {"command", command_line},
            {"text", {{"path", text_path}, {"raw_bytes", corpus.raw_bytes}, {"train_bytes", corpus.train.size()},
                      {"held_out_bytes", corpus.held_out.size()}, {"source", "The Jargon File 4.4.7 (public domain)"}}},
            {"facts", {{"count", facts.size()}, {"entities", entities}, {"seed", seed}, {"file", "facts.tsv"}}},
            {"training", {{"steps", schedule.steps}, {"batch", batch}, {"seq_len", seq_len}, {"peak_lr", schedule.peak_lr},
                          {"warmup_fraction", schedule.warmup_fraction}, {"weight_decay", schedule.adam.weight_decay},
                          {"fact_fraction", fact_fraction}, {"seed", seed}, {"seconds", seconds}}},
            {"result", {{"held_out_bits_per_byte", bpb}, {"fact_accuracy", fact_result.accuracy},
                        {"final_train_bits_per_byte", smoothed}}},
            {"parameters", config.parameter_count()}};
        loranull::io::write_text_atomically(partial / "pretraining.json", meta.dump(2) + "\n");
        io::plot_png(partial / "loss.png",
                     io::png_header() + "set datafile separator ','\nset xlabel 'step'\nset ylabel 'bits per byte'\n"
                                        "set y2label 'fact accuracy'\nset y2tics\nset y2range [0:1]\n"
                                        "plot 'loss.csv' skip 1 using 1:2 with linespoints title 'training (smoothed)', "
                                        "'' skip 1 using 1:3 with linespoints title 'held-out text', "
                                        "'' skip 1 using 1:4 axes x1y2 with linespoints title 'facts recalled'\n");
        if (fs::exists(out)) fs::remove_all(out);
        fs::rename(partial, out);
        std::printf("wrote %s\n", out.string().c_str());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "\nerror: %s\n", e.what());
        return 1;
    }
}
