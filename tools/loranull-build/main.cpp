// loranull-build: LoRA-Null (and the other initialisations) for a whole Hugging
// Face LLaMA checkpoint, streamed block by block (docs/loranull-build.md):
//
//   loranull-build --model DIR --calib TOKENS.safetensors --method lora-null --rank 128 --out DIR
//   mpirun -np K loranull-build <the same options>
//
// The work is pipeline::AdapterBuilder's (include/loranull/pipeline/): this
// main parses the options, joins the mpirun job when there is one, draws the
// progress, prints the report and turns errors into one line and an exit
// status (2: the command line, 1: files, data, computation; 3: stopped by
// --stop-after-blocks, for testing).
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include <unistd.h>

#include <loranull/loranull.hpp>
#include <loranull/io/progress_bar.hpp>
#include <loranull/parallel/communicator.hpp>
#include <loranull/pipeline/adapter_builder.hpp>
#ifdef LORANULL_HAS_MPI
#include <loranull/parallel/mpi_communicator.hpp>
#endif

#include "../tool_options.hpp"
#include "build_device.hpp"
#include "options.hpp"
#include "report.hpp"

using namespace loranull;

#ifndef LORANULL_BUILD_CUDA
// Without nvcc there is no CUDA builder; options.hpp refuses --device cuda first.
pipeline::BuildResult tools::build::run_on_cuda(const pipeline::BuildOptions&, const pipeline::BuildProgress&,
                                                const parallel::MpiCommunicator*) {
    pipeline::refuse_request("--device cuda: this loranull-build was built without CUDA");
}
#endif

namespace {

#ifdef LORANULL_HAS_MPI
// When one rank of an mpirun job dies (killed, or exited before the others
// could agree on an error), mpirun stops the rest with SIGTERM: each says so
// in one line instead of vanishing. Written before the signal can come, so the
// handler only calls write() and _exit(), which are async-signal-safe.
char stop_line[256];
std::size_t stop_line_length = 0;

extern "C" void report_stop(int) {
    [[maybe_unused]] const ssize_t n = ::write(2, stop_line, stop_line_length);
    ::_exit(1);
}

void say_why_when_stopped(int rank, int size) {
    stop_line_length = static_cast<std::size_t>(std::snprintf(
        stop_line, sizeof stop_line,
        "%sloranull-build: error: rank %d of %d stopped by mpirun: another rank failed or was killed (its "
        "own message, if any, is above), or the job was cancelled\n",
        ::isatty(2) ? "\n" : "", rank, size));
    std::signal(SIGTERM, report_stop);
}
#endif

/// Steps 2-3 on this process, one of `ranks` (null: alone; root: rank 0, which
/// reports); the exit status.
int build_and_report(const pipeline::BuildOptions& options, const parallel::MpiCommunicator* ranks, bool root,
                     std::unique_ptr<io::ProgressBar>& bar) {
    // 2. The build, with a progress bar on stderr (rank 0's).
    pipeline::BuildProgress progress;
    progress.start = [&](Index total, Index done) {
        bar = std::make_unique<io::ProgressBar>("loranull-build", total, done, "blocks");
    };
    progress.status = [&](const std::string& what) { bar->status(what); };
    progress.block_written = [&](const std::string& what) { bar->advance(what); };
    progress.note = [&](const std::string& line) {
        bar->finish();
        std::fprintf(stderr, "loranull-build: %s\n", line.c_str());
    };
    CpuBackend cpu;
    pipeline::BuildResult result;
    if (options.device == "cuda") {
        result = tools::build::run_on_cuda(options, progress, ranks);
    } else if (ranks) {
#ifdef LORANULL_HAS_MPI
        parallel::MpiCommunicator mpi = *ranks;
        result = pipeline::AdapterBuilder<CpuBackend, parallel::MpiCommunicator>(cpu, mpi, options, progress).run();
#endif
    } else {
        result = pipeline::AdapterBuilder<CpuBackend>(cpu, options, progress).run();
    }
    if (bar) bar->finish();

    // 3. What happened (rank 0 speaks for all).
    if (result.stopped) {
        if (root)
            std::fprintf(stderr, "loranull-build: stopped after %td block(s) (--stop-after-blocks, for testing); "
                                 "rerun with the same options to resume\n",
                         options.stop_after_blocks);
        return 3;
    }
    if (!root) return 0;
    if (result.already_finished) {
        std::printf("%s is a finished run with these settings: nothing to do\n", options.out.c_str());
        return 0;
    }
    tools::build::print_report(result.report, options.has_calibration());
    for (const std::string& w : result.warnings) std::fprintf(stderr, "loranull-build: %s\n", w.c_str());
    std::printf("wrote %s%s/adapter\n", options.export_plain ? "" : (options.out + "/model and ").c_str(),
                options.out.c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::unique_ptr<io::ProgressBar> bar;  // blocks written; its line ends before any error
#ifdef LORANULL_HAS_MPI
    std::optional<parallel::MpiSession> session;  // finalised after everything else
    std::optional<parallel::MpiCommunicator> world;
#endif
    bool shared_error = false;  // every rank knows of the error: each may end normally
    const int status = tools::run_tool(
        "loranull-build",
        [&] {
            // 1. The options, before MPI: --help and usage errors end every
            //    rank alike, with no MPI job to leave.
            const pipeline::BuildOptions options = tools::build::parse_options(argc, argv);

            // The processes: this one alone, or one rank of an mpirun job.
            const parallel::MpiCommunicator* ranks = nullptr;
            bool root = true;
            const int launched = parallel::launcher_world_size();
#ifdef LORANULL_HAS_MPI
            if (launched > 0) {
                session.emplace(argc, argv);
                world.emplace();
                say_why_when_stopped(world->rank(), world->size());
                if (world->size() > 1) ranks = &*world;
                root = world->rank() == 0;
            }
#else
            if (launched > 1)
                pipeline::refuse_request("started as one of ", launched, " processes (mpirun?), but this "
                                         "loranull-build was built without MPI (install libopenmpi-dev and "
                                         "reconfigure): each copy would do the whole build alone");
#endif
            try {
                return build_and_report(options, ranks, root, bar);
            } catch (const pipeline::SharedBuildError&) {
                shared_error = true;
                throw;
            }
        },
        [&] {
            if (bar) bar->finish();
        });
#ifdef LORANULL_HAS_MPI
    // An error of this rank alone: the others may wait for it in a collective.
    // MPI_Abort ends the whole job now (mpirun stops the others: their line above).
    if (status != 0 && status != 3 && !shared_error && world && world->size() > 1) MPI_Abort(world->comm(), status);
#endif
    return status;
}
