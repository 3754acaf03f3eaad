// distributed_null_space: the calibration half of LoRA-Null spread over MPI
// ranks, as a C++ trainer that already runs under mpirun would do it with the
// library (no loranull-build):
//
//   1. each rank streams its own calibration samples through a Covariance,
//   2. Covariance::sum_to adds the ranks' sums (and token counts) onto rank 0,
//   3. rank 0 takes the null space of rank r and checks it against the
//      covariance of all the samples computed by one process.
//
//   mpirun -np 3 distributed_null_space [--dim N] [--rank R] [--samples S]
//
// The same code runs alone (SingleProcess) or on GPUs (NcclCommunicator with
// CudaBackend): only the communicator changes (docs/design.md, "Communicators").
#include <cstdio>
#include <cstdlib>
#include <string>

#include <loranull/loranull.hpp>
#include <loranull/parallel/mpi_communicator.hpp>

using namespace loranull;
using Mat = CpuBackend::Matrix<double>;

namespace {

/// Sample k of the calibration (dim x 64 tokens): the same on every rank, so
/// that rank 0 can check the distributed sum against one process's.
Mat sample(CpuBackend& cpu, Index dim, Index k) {
    Rng rng(1000 + static_cast<std::uint64_t>(k));
    Mat x = cpu.upload(random_uniform<double>(dim, 64, rng, -1.0, 1.0));
    for (Index i = 0; i < dim; ++i) x.row(i) *= std::pow(0.9, double(i));  // anisotropic, as hidden states are
    return x;
}

long option(int argc, char** argv, const std::string& name, long fallback) {
    for (int i = 1; i + 1 < argc; ++i)
        if (argv[i] == name) return std::atol(argv[i + 1]);
    return fallback;
}

}  // namespace

int main(int argc, char** argv) {
    parallel::MpiSession session(argc, argv);  // MPI_Init .. MPI_Finalize
    parallel::MpiCommunicator comm;            // MPI_COMM_WORLD
    const Index dim = option(argc, argv, "--dim", 64), rank = option(argc, argv, "--rank", 8),
                samples = option(argc, argv, "--samples", 24);
    CpuBackend cpu;

    // 1. This rank's share of the samples: k = rank, rank + size, ...
    Covariance<CpuBackend, double> mine(cpu, dim);
    for (Index k = comm.rank(); k < samples; k += comm.size()) mine.add(sample(cpu, dim, k));

    // 2. Every rank's sum onto rank 0 (collective: every rank calls it).
    mine.sum_to(comm, 0);
    if (comm.rank() != 0) return 0;

    // 3. Rank 0 holds the covariance of all the samples.
    Covariance<CpuBackend, double> whole(cpu, dim);
    for (Index k = 0; k < samples; ++k) whole.add(sample(cpu, dim, k));
    const NullSpace<CpuBackend, double> ns = null_space(mine, rank), reference = null_space(whole, rank);
    const double covariance_error = (mine.matrix() - whole.matrix()).norm() / whole.matrix().norm();
    const double projector_error =
        (ns.basis * ns.basis.transpose() - reference.basis * reference.basis.transpose()).norm();
    std::printf("%d ranks, %td samples of 64 tokens, dim %td: covariance error %.1e, rank-%td null-space projector "
                "error %.1e, energy in the null space %.2e\n",
                comm.size(), samples, dim, covariance_error, rank, projector_error, ns.energy_fraction());
    return covariance_error < 1e-12 && projector_error < 1e-8 ? 0 : 1;
}
