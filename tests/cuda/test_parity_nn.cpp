// CPU-vs-GPU parity of every neural-network kernel: the NN rows of
// parity_table.hpp. Linked with parity_gpu.cu into test_cuda_parity, and with
// parity_emulated.cu into test_cuda_nn_emulated (the GPU kernels on the host).
#include "parity_compare.hpp"

LORANULL_PARITY_NN_CASES(LORANULL_PARITY_TEST_CASE)
