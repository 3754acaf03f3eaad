// CPU-vs-GPU parity of every primitive of the backend seam and every linalg
// algorithm: the linear-algebra rows of parity_table.hpp, compared as
// parity_compare.hpp says.
#include "parity_compare.hpp"

LORANULL_PARITY_LINALG_CASES(LORANULL_PARITY_TEST_CASE)
