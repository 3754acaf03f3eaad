#pragma once
// loranull: LoRA-Null and the low-rank adaptation methods it is compared with,
// header-only. This umbrella header brings everything that needs no CUDA:
//
//   core/     errors, index and scalar types, host matrices, seeded RNG
//   backend/  the primitive set (backend.hpp) and the CPU backend (Eigen +
//             OpenBLAS/LAPACKE). The CUDA backend lives in backend/cuda/ and is
//             included only from .cu files.
//   linalg/   covariance accumulator, symmetric eigensolvers, SVDs, null space
//   lora/     LoraLinear, every initialisation, the knowledge-preservation report
//   io/       safetensors, covariance files, PEFT adapters

#include "loranull/core/error.hpp"
#include "loranull/core/host_matrix.hpp"
#include "loranull/core/random.hpp"
#include "loranull/core/types.hpp"

#include "loranull/backend/backend.hpp"
#include "loranull/backend/cpu/cpu_backend.hpp"

#include "loranull/linalg/covariance.hpp"
#include "loranull/linalg/null_space.hpp"
#include "loranull/linalg/svd.hpp"
#include "loranull/linalg/symmetric_eigen.hpp"

#include "loranull/lora/initialisers.hpp"
#include "loranull/lora/knowledge_report.hpp"
#include "loranull/lora/lora_linear.hpp"

#include "loranull/io/covariance_file.hpp"
#include "loranull/io/dtype.hpp"
#include "loranull/io/peft.hpp"
#include "loranull/io/safetensors.hpp"
