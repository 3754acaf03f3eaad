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
  --rank R             adapter rank (default 8)
  --steps N            fine-tuning steps (default 300)
  --batch N            sequences per step (default 32; 64 bytes each)
  --lr LIST            learning rates for every method (overrides the next two)
  --lr-full LIST       rates for full fine-tuning (default 1e-3; --sweep: 3e-4,1e-3,3e-3)
  --lr-adapter LIST    rates for the adapters (default 3e-3, where the methods' knowledge
                       differs most; --sweep: 3e-3,1e-2,3e-2)
  --seeds N            seeds per (method, rate) (default 1; --sweep: 3)
  --sweep              three rates per method and three seeds (about 10x the default time)
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
                        {"--model", "--text", "--out", "--methods", "--rank", "--steps", "--batch", "--lr", "--lr-full",
                         "--lr-adapter", "--seeds", "--calib-samples", "--digits", "--device", "--merge"},
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
