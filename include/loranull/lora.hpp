#pragma once
// loranull/lora: the LoRA layer (LoraLinear, the rank-2r conversion), every
// initialisation the paper compares, their one dispatch by name (methods.hpp),
// and the knowledge-preservation report of SPEC.md section 4.

#include "loranull/lora/initialisers.hpp"
#include "loranull/lora/knowledge_report.hpp"
#include "loranull/lora/lora_linear.hpp"
#include "loranull/lora/methods.hpp"
