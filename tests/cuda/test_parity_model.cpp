// CPU-vs-GPU parity of the whole LLaMA model: the model row of
// parity_table.hpp (a translation unit of its own: it compiles in parallel
// with test_parity.cpp).
#include "parity_compare.hpp"

LORANULL_PARITY_MODEL_CASES(LORANULL_PARITY_TEST_CASE)
