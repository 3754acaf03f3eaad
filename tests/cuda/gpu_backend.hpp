#pragma once
// The one CudaBackend of a GPU test process, shared by every .cu file of it
// (parity_gpu.cu, parity_gpu_nn.cu, gpu_only.cu), and the parity table's
// run_on_device on it. Deliberately never destroyed: library handles
// torn down by static destructors after the CUDA runtime has begun its own
// shutdown is a classic source of crashes at exit. Include only from .cu files.

#include <loranull/backend/cuda/cuda_backend.hpp>

#include "parity_table.hpp"

namespace parity {

inline loranull::CudaBackend& gpu_backend() {
    static loranull::CudaBackend* instance = new loranull::CudaBackend(0);
    return *instance;
}

template <class Case, class T>
typename Case::template Result<T> run_on_device(const typename Case::template Item<T>& item) {
    return Case::template run<T>(gpu_backend(), item);
}

}  // namespace parity
