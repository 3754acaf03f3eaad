#pragma once
// MpiCommunicator: the Communicator of parallel/communicator.hpp over MPI
// (Open MPI from Debian: libopenmpi-dev, openmpi-bin), between processes on
// one machine or many. Include it only where <mpi.h> is (CMake: MPI::MPI_CXX,
// LORANULL_HAS_MPI); the rest of the library never needs MPI.
//
// Every call checks MPI's return code (the communicator is switched to
// MPI_ERRORS_RETURN) and throws loranull::error naming the call. Matrices go
// in pieces of at most max_message_bytes, so no count passes int's range (MPI
// counts elements in int) and no single message is larger than a fraction of
// the 2 GiB that some transports choke on. Device matrices are staged through
// the host (this is not CUDA-aware MPI; NcclCommunicator keeps them on the GPU).

#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "loranull/backend/backend.hpp"
#include "loranull/core/error.hpp"
#include "loranull/core/host_matrix.hpp"
#include "loranull/parallel/communicator.hpp"

namespace loranull::parallel {

/// MPI_Init_thread .. MPI_Finalize for the life of a tool's main. Funneled:
/// only the main thread calls MPI (Eigen's and OpenBLAS's threads never do).
class MpiSession {
public:
    MpiSession(int& argc, char**& argv) {
        int provided = 0;
        check(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    }
    ~MpiSession() {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized) MPI_Finalize();
    }
    MpiSession(const MpiSession&) = delete;
    MpiSession& operator=(const MpiSession&) = delete;

    static void check(int code, const char* call) {
        if (code == MPI_SUCCESS) return;
        char text[MPI_MAX_ERROR_STRING];
        int length = 0;
        MPI_Error_string(code, text, &length);
        fail("MpiCommunicator", call, " failed: ", std::string(text, static_cast<std::size_t>(length)));
    }
};

class MpiCommunicator {
public:
    static constexpr std::size_t default_max_message_bytes = std::size_t(256) << 20;  // 256 MiB

    explicit MpiCommunicator(MPI_Comm comm = MPI_COMM_WORLD, std::size_t max_message_bytes = default_max_message_bytes)
        : comm_(comm), max_message_bytes_(std::max<std::size_t>(max_message_bytes, 8)) {
        MpiSession::check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
        MpiSession::check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
        MpiSession::check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
    }

    int rank() const { return rank_; }
    int size() const { return size_; }
    static constexpr const char* name() { return "MPI"; }
    MPI_Comm comm() const { return comm_; }
    std::size_t max_message_bytes() const { return max_message_bytes_; }

    /// This rank among the ranks of its machine, and how many they are
    /// (MPI_COMM_TYPE_SHARED): where one GPU per rank is chosen. Collective.
    std::pair<int, int> node_rank_and_size() const {
        MPI_Comm node = MPI_COMM_NULL;
        MpiSession::check(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node),
                          "MPI_Comm_split_type");
        int rank = 0, size = 1;
        MPI_Comm_rank(node, &rank);
        MPI_Comm_size(node, &size);
        MPI_Comm_free(&node);
        return {rank, size};
    }

    /// M summed over the ranks onto root's M (MPI_Reduce, in pieces).
    template <class Bk, class M>
    void sum_to(Bk& b, M& m, int root) const {
        static_assert(std::is_same_v<typename M::Scalar, double>, "sum_to reduces double matrices");
        check_root(root, "sum_to");
        if constexpr (Bk::host_memory) {
            reduce_doubles(m.data(), static_cast<std::size_t>(m.size()), root);
        } else {
            HostMatrix<double> host = b.download(m);
            reduce_doubles(host.data(), static_cast<std::size_t>(host.size()), root);
            if (rank_ == root) m = b.upload(host);
        }
    }

    void sum(std::span<std::int64_t> counts) const {
        if (counts.empty()) return;
        MpiSession::check(MPI_Allreduce(MPI_IN_PLACE, counts.data(), static_cast<int>(counts.size()), MPI_INT64_T,
                                        MPI_SUM, comm_),
                          "MPI_Allreduce");
    }

    void broadcast(std::string& bytes, int root) const {
        check_root(root, "broadcast");
        std::uint64_t n = bytes.size();
        MpiSession::check(MPI_Bcast(&n, 1, MPI_UINT64_T, root, comm_), "MPI_Bcast");
        if (rank_ != root) bytes.resize(n);
        for_each_piece(n, [&](std::size_t at, int count) {
            MpiSession::check(MPI_Bcast(bytes.data() + at, count, MPI_BYTE, root, comm_), "MPI_Bcast");
        });
    }

    void send(const std::string& bytes, int to) const {
        check_root(to, "send");
        const std::uint64_t n = bytes.size();
        MpiSession::check(MPI_Send(&n, 1, MPI_UINT64_T, to, tag, comm_), "MPI_Send");
        for_each_piece(n, [&](std::size_t at, int count) {
            MpiSession::check(MPI_Send(bytes.data() + at, count, MPI_BYTE, to, tag, comm_), "MPI_Send");
        });
    }

    std::string receive(int from) const {
        check_root(from, "receive");
        std::uint64_t n = 0;
        MpiSession::check(MPI_Recv(&n, 1, MPI_UINT64_T, from, tag, comm_, MPI_STATUS_IGNORE), "MPI_Recv");
        std::string bytes(n, '\0');
        for_each_piece(n, [&](std::size_t at, int count) {
            MpiSession::check(MPI_Recv(bytes.data() + at, count, MPI_BYTE, from, tag, comm_, MPI_STATUS_IGNORE),
                              "MPI_Recv");
        });
        return bytes;
    }

    /// The lowest failing rank's failure, on every rank (MPI_Allreduce of the
    /// failing ranks, then that rank's message broadcast).
    std::optional<Failure> first_failure(std::optional<Failure> mine) const {
        const int me = mine ? rank_ : size_;
        int first = size_;
        MpiSession::check(MPI_Allreduce(&me, &first, 1, MPI_INT, MPI_MIN, comm_), "MPI_Allreduce");
        if (first == size_) return std::nullopt;
        std::string packed = rank_ == first ? pack({std::to_string(mine->code), mine->message}) : std::string();
        broadcast(packed, first);
        const std::vector<std::string> parts = unpack(packed);
        require(parts.size() == 2, "MpiCommunicator::first_failure", "malformed failure message from rank ", first);
        return Failure{first, std::stoi(parts[0]), parts[1]};
    }

private:
    static constexpr int tag = 7301;

    void check_root(int r, const char* where) const {
        require(r >= 0 && r < size_, std::string("MpiCommunicator::") + where, "rank ", r, " outside 0 .. ", size_ - 1);
    }

    /// f(offset, count) over [0, n) bytes in pieces of at most max_message_bytes_.
    template <class F>
    void for_each_piece(std::uint64_t n, F&& f) const {
        for (std::uint64_t at = 0; at < n; at += max_message_bytes_)
            f(static_cast<std::size_t>(at), static_cast<int>(std::min<std::uint64_t>(max_message_bytes_, n - at)));
    }

    void reduce_doubles(double* data, std::size_t count, int root) const {
        const std::size_t piece = max_message_bytes_ / sizeof(double);
        for (std::size_t at = 0; at < count; at += piece) {
            const int n = static_cast<int>(std::min(piece, count - at));
            const void* send = rank_ == root ? MPI_IN_PLACE : static_cast<const void*>(data + at);
            MpiSession::check(MPI_Reduce(send, data + at, n, MPI_DOUBLE, MPI_SUM, root, comm_), "MPI_Reduce");
        }
    }

    MPI_Comm comm_;
    std::size_t max_message_bytes_;
    int rank_ = 0, size_ = 1;
};

}  // namespace loranull::parallel
