// loranull-experiment: the LoRA-Null paper's knowledge-retention experiment in
// miniature (SPEC.md sections 4 and 7), the project's main job. The pipeline
// is examples/experiment/pipeline.hpp; docs/results.md explains the outputs
// and shows a full run.

#include <cstdio>
#include <string>

#include <loranull/backend/cpu/cpu_backend.hpp>

#include "pipeline.hpp"

using namespace loranull;
using namespace experiment;

#ifdef LORANULL_EXPERIMENT_CUDA
namespace experiment {
int run_experiment_cuda(const Args& args);  // main_cuda.cu
}
#endif

namespace {

const char* usage = R"(usage: loranull-experiment [options]

Fine-tunes the shipped pre-trained model on addition with every method and
measures what each keeps of its knowledge and what it learns.

  --model DIR          pre-trained checkpoint (default: the shipped data/jargon-facts-llama)
  --text PATH          the Jargon File (default /usr/share/doc/jargon-text/jargon.txt.gz)
  --out DIR            output folder (default results; replaced if it holds an earlier run)
  --methods LIST       comma-separated, from full, lora, pissa, milora, corda,
                       lora-null-v1, lora-null-v2 (default: all)
  --rank R             adapter rank (default 32)
  --ranks LIST         several ranks, e.g. 8,16,32 (instead of --rank); every table,
                       CSV and plot carries the rank; full fine-tuning runs once
  --steps N            fine-tuning steps (default 300)
  --batch N            sequences per step (default 32; 64 bytes each)
  --lr LIST            learning rates for every method (overrides the next two)
  --lr-full LIST       rates for full fine-tuning
  --lr-adapter LIST    rates for the adapters, at every rank
                       (default for both: each method's own rate frontier, the
                       centre of its knowledge-task trade at the rank; --sweep:
                       five rates a quarter-decade apart around it; see
                       docs/results.md, "Rates")
  --seeds N            seeds per (method, rank, rate) (default 1; --sweep: 3)
  --sweep              five rates per method and rank and three seeds (15x the runs)
  --task-levels LIST   exact-match levels of the equal-task-score table
                       (default 0.25,0.5,0.9)
  --calib-samples N    knowledge sequences for calibration (default 256, 128 bytes each)
  --digits D           operand digits of the addition task (default 2)
  --device cpu|cuda    backend (default cpu)
  --quiet              no progress bars
  --merge LIST         no training: combine the runs of earlier output folders
                       (comma-separated; e.g. method subsets run as parallel
                       processes) into one table, CSV/JSON and plots in --out
)";

}  // namespace

int main(int argc, char** argv) {
    try {
        const Args args(argc, argv,
                        {"--model", "--text", "--out", "--methods", "--rank", "--ranks", "--steps", "--batch", "--lr",
                         "--lr-full", "--lr-adapter", "--seeds", "--calib-samples", "--digits", "--device", "--merge",
                         "--task-levels"},
                        {"--sweep", "--quiet"}, usage);
        if (args.has("--merge")) return merge_outputs(args);
        const std::string device = args.get("--device", "cpu");
        require(device == "cpu" || device == "cuda", "options", "--device ", device, ": choose cpu or cuda");
        if (device == "cuda") {
#ifdef LORANULL_EXPERIMENT_CUDA
            return run_experiment_cuda(args);
#else
            fail("options", "--device cuda: this loranull-experiment was built without CUDA (nvcc was not found when "
                            "CMake configured the build); use --device cpu");
#endif
        }
        CpuBackend cpu;
        return run_experiment(cpu, args);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
