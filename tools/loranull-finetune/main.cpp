// loranull-finetune: a PEFT LoRA adapter of a Hugging Face checkpoint trained
// in C++ (docs/loranull-finetune.md), the step between loranull-build and
// loranull-eval:
//
//   loranull-finetune --model OUT/model --adapter OUT/adapter --data train.jsonl
//                     --format prompt-response --out run
//   mpirun -np K loranull-finetune <the same options>
//
// The work is pipeline::Finetuner's (include/loranull/pipeline/finetune.hpp):
// this main reads the options and the data, joins the mpirun job when there
// is one, draws the progress, prints the outcome and turns errors into one
// line and an exit status (2: the command line, 1: files, data, computation;
// 3: stopped by --stop-after-steps, for testing).
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include <loranull/loranull.hpp>
#include <loranull/io/hf_checkpoint.hpp>
#include <loranull/io/progress_bar.hpp>
#include <loranull/parallel/communicator.hpp>
#include <loranull/pipeline/finetune.hpp>
#ifdef LORANULL_HAS_MPI
#include <loranull/parallel/mpi_communicator.hpp>
#endif

#include "../tool_options.hpp"
#include "finetune_device.hpp"
#include "options.hpp"

using namespace loranull;

#ifndef LORANULL_FINETUNE_CUDA
pipeline::FinetuneResult tools::finetune::run_on_cuda(const pipeline::FinetuneOptions&, const pipeline::FinetuneData&,
                                                      const pipeline::FinetuneProgress&, const parallel::MpiCommunicator*) {
    pipeline::refuse_request("--device cuda: this loranull-finetune was built without CUDA");
}
#endif

namespace {

/// Steps 2-4 on this process, one of `ranks` (null: alone); the exit status.
int finetune(pipeline::FinetuneOptions o, const parallel::MpiCommunicator* ranks, bool root,
             std::unique_ptr<io::ProgressBar>& bar) {
    // 2. The data, tokenized with the model's tokenizer, every rank alike.
    const LlamaConfig config = io::HfCheckpointReader(o.model, "--model " + o.model).config();
    if (o.seq_len == 0) {
        o.seq_len = std::min<Index>(512, config.max_seq_len);
        if (config.sliding_window > 0) o.seq_len = std::min(o.seq_len, config.sliding_window);
    }
    if (ranks && o.grad_accum < ranks->size())
        pipeline::refuse_request("--grad-accum ", o.grad_accum, " is smaller than the ", ranks->size(),
                                 " ranks: each rank takes whole micro-batches of a step (use --grad-accum >= ",
                                 ranks->size(), ")");
    const text::Tokenizer tokenizer = text::Tokenizer::from_folder(o.model);
    const pipeline::FinetuneData data =
        pipeline::read_finetune_data(o.data, o.format, o.prompt_field, o.response_field, o.seq_len, tokenizer, config, o.model);

    // 3. The training, with a progress bar on stderr (rank 0's).
    pipeline::FinetuneProgress progress;
    if (root) {
        progress.start = [&](long total, long done) {
            bar = std::make_unique<io::ProgressBar>("loranull-finetune", total, done, "steps");
        };
        progress.step = [&](long done, const std::string& note) { bar->set(done, note); };
        progress.note = [&](const std::string& line) {
            if (bar) bar->finish();
            std::fprintf(stderr, "loranull-finetune: %s\n", line.c_str());
        };
    }
    pipeline::FinetuneResult result;
    if (o.device == "cuda") {
        result = tools::finetune::run_on_cuda(o, data, progress, ranks);
    } else if (ranks) {
#ifdef LORANULL_HAS_MPI
        CpuBackend cpu;
        parallel::MpiCommunicator mpi = *ranks;
        result = pipeline::Finetuner<CpuBackend, parallel::MpiCommunicator>(cpu, mpi, o, data, progress).run();
#endif
    } else {
        CpuBackend cpu;
        parallel::SingleProcess alone;
        result = pipeline::Finetuner<CpuBackend>(cpu, alone, o, data, progress).run();
    }
    if (bar) bar->finish();

    // 4. What happened (rank 0 speaks for all).
    if (result.stopped) {
        if (root)
            std::fprintf(stderr, "loranull-finetune: stopped after %ld step(s) (--stop-after-steps, for testing); "
                                 "rerun with the same options to resume\n", o.stop_after_steps);
        return 3;
    }
    if (!root) return 0;
    if (result.already_finished) {
        std::printf("%s is a finished run with these settings: nothing to do\n", o.out.c_str());
        return 0;
    }
    const auto& r = result.report;
    std::printf("trained %s of %s: %ld steps of %td sequences, loss %.6g -> %.6g nats/token, %.0f tokens/s\n",
                r["train"].get<std::string>().c_str(), o.adapter.c_str(), r["steps"].get<long>(),
                r["global_batch"].get<Index>(), r["first_loss"].get<double>(), r["last_loss"].get<double>(),
                r["tokens_per_second"].get<double>());
    if (!r["knowledge"].is_null())
        std::printf("knowledge: largest relative output change %.3g on the calibration data; bound %s\n",
                    r["knowledge"]["max_relative_change"].get<double>(),
                    r["train"] == "B" ? (r["knowledge"]["bounds_hold"].get<bool>() ? "holds in every module" : "VIOLATED")
                                      : "not applicable (A trained)");
    std::printf("wrote %s/adapter%s, loss.csv, finetune.json\n", o.out.c_str(), o.export_plain ? ", adapter-plain" : "");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::unique_ptr<io::ProgressBar> bar;
#ifdef LORANULL_HAS_MPI
    std::optional<parallel::MpiSession> session;  // finalised after everything else
    std::optional<parallel::MpiCommunicator> world;
#endif
    const int status = tools::run_tool(
        "loranull-finetune",
        [&] {
            // 1. The options, before MPI: --help and usage errors end every rank alike.
            const pipeline::FinetuneOptions options = tools::finetune::parse_options(argc, argv);
            const parallel::MpiCommunicator* ranks = nullptr;
            bool root = true;
            const int launched = parallel::launcher_world_size();
#ifdef LORANULL_HAS_MPI
            if (launched > 0) {
                session.emplace(argc, argv);
                world.emplace();
                if (world->size() > 1) ranks = &*world;
                root = world->rank() == 0;
            }
#else
            if (launched > 1)
                pipeline::refuse_request("started as one of ", launched, " processes (mpirun?), but this "
                                         "loranull-finetune was built without MPI: each copy would train alone");
#endif
            return finetune(options, ranks, root, bar);
        },
        [&] {
            if (bar) bar->finish();
        });
#ifdef LORANULL_HAS_MPI
    // Every rank reads the same options, model, adapter and data and takes
    // the same steps, so their errors are alike and each rank ends by itself;
    // a refused request (exit 2) is decided before any collective. An input or
    // computation error may be one rank's alone (a disk, the memory), which
    // would leave the others waiting in a collective: MPI_Abort ends the job.
    if (status == 1 && world && world->size() > 1) MPI_Abort(world->comm(), status);
#endif
    return status;
}
