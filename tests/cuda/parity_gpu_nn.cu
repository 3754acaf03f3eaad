// The GPU half of the parity table (parity_table.hpp), NN kernel and model
// cases: their run on CudaBackend (gpu_backend.hpp). Compiled by nvcc; includes
// no Eigen.
#include "gpu_backend.hpp"

namespace parity {

LORANULL_PARITY_NN_CASES(LORANULL_PARITY_INSTANTIATE)
LORANULL_PARITY_MODEL_CASES(LORANULL_PARITY_INSTANTIATE)

}  // namespace parity
