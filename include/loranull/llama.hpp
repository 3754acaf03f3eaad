#pragma once
// loranull/llama: the LLaMA model (config, projections with adapters, block
// forward and backward, training with AdamW) and the calibration of its four
// block inputs. Generic over an NnBackend.

#include "loranull/llama/calibration.hpp"
#include "loranull/llama/config.hpp"
#include "loranull/llama/model.hpp"
#include "loranull/llama/projection.hpp"
#include "loranull/llama/train.hpp"
