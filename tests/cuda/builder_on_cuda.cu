// The block-streamed adapter builder is generic over the backend: instantiated
// here, whole, on CudaBackend (every member function compiled by nvcc, with no
// Eigen), so that a CPU assumption slipping into pipeline/ fails the build
// even where the tools are not built. (loranull-build --device cuda compiles
// it again, with the MPI and NCCL communicators, in tools/loranull-build/
// build_cuda.cu.) No GPU has run this instantiation yet.
#include <loranull/backend/cuda/cuda_backend.hpp>
#include <loranull/pipeline/adapter_builder.hpp>

template class loranull::pipeline::AdapterBuilder<loranull::CudaBackend>;
