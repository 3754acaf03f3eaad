#pragma once
// loranull/io (namespace loranull::io): files and the terminal. Safetensors
// (a validating reader, the streaming writer), element types, covariance
// files, PEFT adapters, Hugging Face checkpoints, atomic publication of every
// file, and the progress bar.

#include "loranull/io/atomic_file.hpp"
#include "loranull/io/covariance_file.hpp"
#include "loranull/io/dtype.hpp"
#include "loranull/io/hf_checkpoint.hpp"
#include "loranull/io/peft.hpp"
#include "loranull/io/progress_bar.hpp"
#include "loranull/io/safetensors.hpp"
#include "loranull/io/safetensors_writer.hpp"
