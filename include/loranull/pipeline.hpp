#pragma once
// loranull/pipeline (namespace loranull::pipeline): the block-streamed adapter
// builder (AdapterBuilder<Bk, Comm>) that takes a Hugging Face checkpoint and
// calibration tokens to a residual model and a PEFT adapter, with its options,
// output folder, settings, assembly and report; and the fine-tuning of such an
// adapter (Finetuner<Bk, Comm>) with its data, options and knowledge report.
// loranull-build and loranull-finetune are thin mains over them.

#include "loranull/pipeline/adapter_builder.hpp"
#include "loranull/pipeline/block_decomposition.hpp"
#include "loranull/pipeline/build_assembly.hpp"
#include "loranull/pipeline/build_folder.hpp"
#include "loranull/pipeline/build_options.hpp"
#include "loranull/pipeline/build_ranks.hpp"
#include "loranull/pipeline/build_settings.hpp"
#include "loranull/pipeline/calibration_tokens.hpp"
#include "loranull/pipeline/finetune.hpp"
#include "loranull/pipeline/finetune_data.hpp"
#include "loranull/pipeline/finetune_options.hpp"
#include "loranull/pipeline/finetune_report.hpp"
