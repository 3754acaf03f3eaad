// loranull-build: LoRA-Null (and the other initialisations) for a whole Hugging
// Face LLaMA checkpoint, streamed block by block (docs/loranull-build.md):
//
//   loranull-build --model DIR --calib TOKENS.safetensors --method lora-null --rank 128 --out DIR
//
// The work is pipeline::AdapterBuilder's (include/loranull/pipeline/): this
// main parses the options, draws the progress, prints the report and turns
// errors into one line and an exit status (2: the command line, 1: files,
// data, computation; 3: stopped by --stop-after-blocks, for testing).
#include <cstdio>
#include <memory>
#include <string>

#include <loranull/loranull.hpp>
#include <loranull/io/progress_bar.hpp>
#include <loranull/pipeline/adapter_builder.hpp>

#include "../tool_options.hpp"
#include "build_device.hpp"
#include "options.hpp"
#include "report.hpp"

using namespace loranull;

#ifndef LORANULL_BUILD_CUDA
// Without nvcc there is no CUDA builder; options.hpp refuses --device cuda first.
pipeline::BuildResult tools::build::run_on_cuda(const pipeline::BuildOptions&, const pipeline::BuildProgress&) {
    pipeline::refuse_request("--device cuda: this loranull-build was built without CUDA");
}
#endif

int main(int argc, char** argv) {
    std::unique_ptr<io::ProgressBar> bar;  // blocks written; its line ends before any error
    return tools::run_tool(
        "loranull-build",
        [&] {
            // 1. The options.
            const pipeline::BuildOptions options = tools::build::parse_options(argc, argv);

            // 2. The build, with a progress bar on stderr.
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
            const pipeline::BuildResult result = options.device == "cuda"
                                                     ? tools::build::run_on_cuda(options, progress)
                                                     : pipeline::AdapterBuilder<CpuBackend>(cpu, options, progress).run();
            if (bar) bar->finish();

            // 3. What happened.
            if (result.already_finished) {
                std::printf("%s is a finished run with these settings: nothing to do\n", options.out.c_str());
                return 0;
            }
            if (result.stopped) {
                std::fprintf(stderr, "loranull-build: stopped after %td block(s) (--stop-after-blocks, for testing); "
                                     "rerun with the same options to resume\n", options.stop_after_blocks);
                return 3;
            }
            tools::build::print_report(result.report, options.has_calibration());
            for (const std::string& w : result.warnings) std::fprintf(stderr, "loranull-build: %s\n", w.c_str());
            std::printf("wrote %s%s/adapter\n", options.export_plain ? "" : (options.out + "/model and ").c_str(),
                        options.out.c_str());
            return 0;
        },
        [&] {
            if (bar) bar->finish();
        });
}
