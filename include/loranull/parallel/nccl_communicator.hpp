#pragma once
// NcclCommunicator: the Communicator of parallel/communicator.hpp for one
// rank per GPU. Device matrices are summed by NCCL (ncclReduce on the
// backend's stream: they never leave the GPUs, and the reduction is ordered
// after the kernels that produced them, with no host synchronisation); the
// rest (counts, bytes, failures) goes over MPI, which also carries NCCL's
// unique id from rank 0 to the others. NCCL wants a GPU of its own per rank:
// with more ranks on a machine than GPUs, use MpiCommunicator instead. Only .cu translation units include it
// (it needs the CUDA backend, <nccl.h> and <mpi.h>).
//
// Compiled in CI, never run on a GPU yet (docs/cuda.md).

#include <mpi.h>
#include <nccl.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>

#include "loranull/backend/cuda/cuda_backend.hpp"
#include "loranull/core/error.hpp"
#include "loranull/parallel/communicator.hpp"
#include "loranull/parallel/mpi_communicator.hpp"

namespace loranull::parallel {

class NcclCommunicator {
public:
    /// Collective over `control`'s ranks: rank 0 makes the NCCL id, MPI
    /// broadcasts it, every rank joins on the current device (cudaSetDevice
    /// it to the backend's first). Destroying it is collective too: a rank that
    /// fails alone must MPI_Abort rather than unwind (build_cuda.cu).
    explicit NcclCommunicator(const MpiCommunicator& control) : control_(&control) {
        ncclUniqueId id{};
        if (control.rank() == 0) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
        std::string bytes(reinterpret_cast<const char*>(&id), sizeof id);
        control.broadcast(bytes, 0);
        std::copy(bytes.begin(), bytes.end(), reinterpret_cast<char*>(&id));
        // Every rank past the broadcast before any enters NCCL's own bootstrap
        // (some MPI collectives components, HCOLL, hang otherwise).
        MpiSession::check(MPI_Barrier(control.comm()), "MPI_Barrier");
        check(ncclCommInitRank(&comm_, control.size(), id, control.rank()), "ncclCommInitRank");
    }
    ~NcclCommunicator() {
        if (comm_) ncclCommDestroy(comm_);
    }
    NcclCommunicator(const NcclCommunicator&) = delete;
    NcclCommunicator& operator=(const NcclCommunicator&) = delete;

    int rank() const { return control_->rank(); }
    int size() const { return control_->size(); }
    static constexpr const char* name() { return "NCCL"; }

    /// M summed onto root's M on the GPUs: ncclReduce in place, enqueued on
    /// the backend's stream.
    template <class M>
    void sum_to(CudaBackend& b, M& m, int root) const {
        static_assert(std::is_same_v<typename M::Scalar, double>, "sum_to reduces double matrices");
        require(root >= 0 && root < size(), "NcclCommunicator::sum_to", "rank ", root, " outside 0 .. ", size() - 1);
        if (m.size() == 0) return;
        check(ncclReduce(m.data(), m.data(), static_cast<std::size_t>(m.size()), ncclDouble, ncclSum, root, comm_,
                         b.stream()),
              "ncclReduce");
    }

    void sum(std::span<std::int64_t> counts) const { control_->sum(counts); }
    void broadcast(std::string& bytes, int root) const { control_->broadcast(bytes, root); }
    void send(const std::string& bytes, int to) const { control_->send(bytes, to); }
    std::string receive(int from) const { return control_->receive(from); }
    std::optional<Failure> first_failure(std::optional<Failure> mine) const {
        return control_->first_failure(std::move(mine));
    }

private:
    static void check(ncclResult_t status, const char* call) {
        if (status != ncclSuccess) fail("NcclCommunicator", call, " failed: ", ncclGetErrorString(status));
    }

    const MpiCommunicator* control_;
    ncclComm_t comm_ = nullptr;
};

}  // namespace loranull::parallel
