// MpiCommunicator under `mpirun -np K` (tests/CMakeLists.txt runs it with K = 2
// and 3): every operation of the Communicator contract (parallel/communicator.hpp)
// against what one process computes, with messages cut into pieces of 24
// bytes so that every split path runs on tiny data. A plain main (not
// doctest): each rank checks, and the rank's exit status says whether all
// held; a failure prints the check and the rank.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <loranull/backend/cpu/cpu_backend.hpp>
#include <loranull/core/random.hpp>
#include <loranull/linalg/covariance.hpp>
#include <loranull/parallel/mpi_communicator.hpp>

using namespace loranull;

namespace {

int failures = 0;
int my_rank = 0;

void check(bool ok, const char* what) {
    if (ok) return;
    std::fprintf(stderr, "rank %d: FAILED: %s\n", my_rank, what);
    ++failures;
}

/// A matrix that differs by rank: rank r's entry (i, j) is r + 1 + i + 10 j.
Eigen::MatrixXd of_rank(int r, Index rows, Index cols) {
    Eigen::MatrixXd m(rows, cols);
    for (Index j = 0; j < cols; ++j)
        for (Index i = 0; i < rows; ++i) m(i, j) = r + 1 + i + 10.0 * j + 0.125;
    return m;
}

}  // namespace

int main(int argc, char** argv) {
    parallel::MpiSession session(argc, argv);
    const parallel::MpiCommunicator comm(MPI_COMM_WORLD, 24);  // 3 doubles a message
    my_rank = comm.rank();
    const int K = comm.size();
    CpuBackend cpu;

    // sum_to: onto every root in turn, a 5 x 7 matrix (35 doubles: 12 pieces).
    for (int root = 0; root < K; ++root) {
        Eigen::MatrixXd m = of_rank(comm.rank(), 5, 7), expected = Eigen::MatrixXd::Zero(5, 7);
        for (int r = 0; r < K; ++r) expected += of_rank(r, 5, 7);
        comm.sum_to(cpu, m, root);
        if (comm.rank() == root) check((m - expected).cwiseAbs().maxCoeff() == 0.0, "sum_to onto root");
    }

    // sum: counts on every rank.
    std::vector<std::int64_t> counts{comm.rank() + 1, 1000000000000LL};
    comm.sum(counts);
    check(counts[0] == K * (K + 1) / 2 && counts[1] == K * 1000000000000LL, "sum of counts");

    // broadcast: 100 bytes (5 pieces) from the last rank, and an empty string.
    std::string bytes = comm.rank() == K - 1 ? std::string(100, 'x') + "end" : std::string("stale");
    comm.broadcast(bytes, K - 1);
    check(bytes == std::string(100, 'x') + "end", "broadcast of 103 bytes");
    std::string empty = comm.rank() == 0 ? std::string() : std::string("stale");
    comm.broadcast(empty, 0);
    check(empty.empty(), "broadcast of nothing");

    // send / receive: every rank > 0 sends rank 0 a message of its own size.
    if (comm.rank() > 0) comm.send(std::string(static_cast<std::size_t>(30 * comm.rank()), char('a' + comm.rank())), 0);
    if (comm.rank() == 0)
        for (int r = 1; r < K; ++r)
            check(comm.receive(r) == std::string(static_cast<std::size_t>(30 * r), char('a' + r)), "send/receive");

    // first_failure: nobody, then the two highest ranks (the lower one wins).
    check(!comm.first_failure(std::nullopt), "no failure");
    std::optional<parallel::Failure> mine;
    if (comm.rank() >= K - 2) mine = parallel::Failure{comm.rank(), 2, "bad thing on rank " + std::to_string(comm.rank())};
    const auto first = comm.first_failure(mine);
    check(first && first->rank == K - 2 && first->code == 2 &&
              first->message == "bad thing on rank " + std::to_string(K - 2),
          "first failure is the lowest failing rank's, on every rank");

    // Covariance::sum_to: the ranks' accumulators over disjoint samples sum to
    // one process's over all of them (raw sums within rounding, counts exact).
    Rng rng(5);
    const HostMatrix<double> all = random_uniform<double>(6, 4 * K, rng, -1.0, 1.0);
    Covariance<CpuBackend, double> whole(cpu, 6), part(cpu, 6);
    whole.add_samples(cpu.upload(all), 4);
    part.add_samples(Eigen::MatrixXd(cpu.upload(all).middleCols(4 * comm.rank(), 4)), 4);
    part.sum_to(comm, K - 1);
    check(part.tokens() == whole.tokens() && part.samples() == whole.samples(), "covariance counts");
    if (comm.rank() == K - 1)
        check((part.matrix() - whole.matrix()).norm() <= 1e-14 * whole.matrix().norm(), "covariance sum");

    std::fprintf(stderr, "rank %d of %d: %s\n", comm.rank(), K, failures ? "FAILED" : "all checks passed");
    return failures ? 1 : 0;
}
