#pragma once
// The device the parity executables test, as the CPU half sees it: no CUDA
// type, so g++ and nvcc both compile it. Defined in parity_gpu.cu (the GPU) or
// parity_emulated.cu (the host emulation, which reports one "device").

#include <string>

namespace parity {

/// cuda_device_count(): 0 without a usable GPU, never throws.
int device_count();
/// "NVIDIA H200 (sm_90, 139 GiB), ..." or "no CUDA device".
std::string device_description();

}  // namespace parity
