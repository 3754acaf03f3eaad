#pragma once
// loranull/parallel (namespace loranull::parallel): what processes that share
// a job need of the engine connecting them. The Communicator concept and the
// single-process one are here; the engines' are included on purpose, where
// their headers are (docs/design.md, "Communicators"):
//
//   #include <loranull/parallel/mpi_communicator.hpp>    MPI (link MPI::MPI_CXX)
//   #include <loranull/parallel/nccl_communicator.hpp>   NCCL + MPI, from .cu files

#include "loranull/parallel/communicator.hpp"
