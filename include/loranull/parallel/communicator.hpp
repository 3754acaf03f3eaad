#pragma once
// Communicator: what a computation spread over processes (the adapter builder
// under mpirun) needs of the engine that connects them. One concept, three
// implementations, so the code that uses it does not change with the engine:
//
//   SingleProcess        this file: one process, every operation trivial
//   MpiCommunicator      parallel/mpi_communicator.hpp (Open MPI between processes and machines)
//   NcclCommunicator     parallel/nccl_communicator.hpp (NCCL between GPUs, MPI for the rest)
//
// The contract (docs/design.md, "Communicators"):
//   - rank() in [0, size()); rank 0 is the one that talks to the user and writes files.
//   - Every operation below except send/receive is collective: every rank
//     calls it, in the same order, with the same root and the same shapes.
//   - sum_to(b, M, root): M (a matrix of backend b) summed element-wise over
//     the ranks onto root's M, in place; the other ranks' M are unspecified
//     afterwards. Device matrices stay on the device where the engine can
//     (NCCL); otherwise they go through the host. Messages are split into
//     pieces of at most max_message_bytes (MPI counts are int: 2 GiB of bytes).
//   - sum(counts): integers summed over the ranks, on every rank.
//   - broadcast(bytes, root): root's bytes to every rank (any size).
//   - send(bytes, to) / receive(from): point to point, any size; the two calls
//     pair up in program order.
//   - first_failure(mine): collective; every rank gives what failed locally
//     (or nothing) and gets the failure of the lowest failing rank (or
//     nothing), identical on every rank. A rank that fails carries on to this
//     call instead of throwing past its peers, so no one waits forever in a
//     collective the failed rank never joins.
//   - An engine error (a peer that died, a broken link) throws loranull::error
//     or ends the process through the engine (mpirun stops the whole job);
//     it never returns wrong data.

#include <concepts>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "loranull/backend/backend.hpp"
#include "loranull/core/error.hpp"

namespace loranull::parallel {

/// What failed on one rank: a classification the caller chose (the builder:
/// its BuildError kind) and the message.
struct Failure {
    int rank = 0;
    int code = 0;
    std::string message;
};

template <class C, class Bk>
concept Communicator = requires(C& c, Bk& b, matrix_t<Bk, double>& m, std::span<std::int64_t> counts,
                                std::string& bytes, const std::string& cbytes, std::optional<Failure> failure,
                                int r) {
    { c.rank() } -> std::convertible_to<int>;
    { c.size() } -> std::convertible_to<int>;
    c.sum_to(b, m, r);
    c.sum(counts);
    c.broadcast(bytes, r);
    c.send(cbytes, r);
    { c.receive(r) } -> std::same_as<std::string>;
    { c.first_failure(failure) } -> std::same_as<std::optional<Failure>>;
};

/// One process: nothing to exchange.
class SingleProcess {
public:
    static constexpr int rank() { return 0; }
    static constexpr int size() { return 1; }
    static constexpr const char* name() { return "single process"; }

    template <class Bk, class M>
    void sum_to(Bk&, M&, int root) const {
        check_root(root, "SingleProcess::sum_to");
    }
    void sum(std::span<std::int64_t>) const {}
    void broadcast(std::string&, int root) const { check_root(root, "SingleProcess::broadcast"); }
    [[noreturn]] void send(const std::string&, int to) const {
        fail("SingleProcess::send", "no rank ", to, " to send to in a single process");
    }
    [[noreturn]] std::string receive(int from) const {
        fail("SingleProcess::receive", "no rank ", from, " to receive from in a single process");
    }
    std::optional<Failure> first_failure(std::optional<Failure> mine) const { return mine; }

private:
    static void check_root(int root, const char* where) {
        require(root == 0, where, "root ", root, " in a single process (rank 0 only)");
    }
};

/// The number of processes an MPI launcher (mpirun, mpiexec, srun) started,
/// read from the environment it sets; 0 when the process was not started by
/// one. Lets a tool built without MPI refuse to run as one of many copies
/// (each would do the whole job alone) and one built with MPI skip MPI_Init
/// when it runs alone.
inline int launcher_world_size() {
    for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})  // Open MPI; MPICH, Intel MPI, srun --mpi=pmi2
        if (const char* v = std::getenv(name))
            if (const int n = std::atoi(v); n > 0) return n;
    return 0;
}

// --- framing: several byte strings in one message ----------------------------

/// parts as one string: each as its 8-byte little-endian length, then its bytes.
inline std::string pack(const std::vector<std::string>& parts) {
    std::string out;
    for (const std::string& p : parts) {
        const auto n = static_cast<std::uint64_t>(p.size());
        for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(n >> (8 * i)));
        out += p;
    }
    return out;
}

/// The inverse of pack; a truncated or overlong frame is an error.
inline std::vector<std::string> unpack(const std::string& packed) {
    std::vector<std::string> parts;
    std::size_t at = 0;
    while (at < packed.size()) {
        require(packed.size() - at >= 8, "parallel::unpack", "truncated length at byte ", at, " of ", packed.size());
        std::uint64_t n = 0;
        for (int i = 0; i < 8; ++i) n |= std::uint64_t(static_cast<unsigned char>(packed[at + i])) << (8 * i);
        at += 8;
        require(n <= packed.size() - at, "parallel::unpack", "a part of ", n, " bytes at byte ", at, " overruns the ",
                packed.size(), "-byte message");
        parts.emplace_back(packed, at, n);
        at += n;
    }
    return parts;
}

}  // namespace loranull::parallel
