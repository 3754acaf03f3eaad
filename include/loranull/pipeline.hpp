#pragma once
// loranull/pipeline (namespace loranull::pipeline): the block-streamed adapter
// builder (AdapterBuilder<Bk, Comm>) that takes a Hugging Face checkpoint and
// calibration tokens to a residual model and a PEFT adapter, with its options,
// output folder, settings, assembly and report. loranull-build is a thin main
// over it.

#include "loranull/pipeline/adapter_builder.hpp"
#include "loranull/pipeline/block_decomposition.hpp"
#include "loranull/pipeline/build_assembly.hpp"
#include "loranull/pipeline/build_folder.hpp"
#include "loranull/pipeline/build_options.hpp"
#include "loranull/pipeline/build_ranks.hpp"
#include "loranull/pipeline/build_settings.hpp"
#include "loranull/pipeline/calibration_tokens.hpp"
