#pragma once
// BuildRanks<Comm>: the adapter builder's processes (one, or K under mpirun)
// seen through a parallel::Communicator, with the few rules that keep them in
// step (docs/loranull-build.md, "Many processes"):
//
//   locally(step)   runs a step of this rank's own work. A failure is kept,
//                   not thrown: the other ranks may be on their way to a
//                   collective this rank must still join. Once failed, a rank
//                   skips its further steps.
//   agree()         collective: if any rank failed, every rank throws the
//                   lowest failing rank's error, the same line everywhere
//                   ("... (rank 1 of 3)"), with its kind (exit 2 or 1).
//   share(n)        this rank's contiguous part of n samples (sizes differ by
//                   at most one).
//   owner(k)        the rank that decomposes the k-th block to compute.
//
// With one process, locally() just runs the step and lets errors pass: the
// single-process builder behaves exactly as before there were ranks.

#include <algorithm>
#include <exception>
#include <optional>
#include <string>
#include <utility>

#include "loranull/core/types.hpp"
#include "loranull/parallel/communicator.hpp"
#include "loranull/pipeline/build_options.hpp"

namespace loranull::pipeline {

/// A failure that every rank knows of (thrown by agree() on all of them): each
/// may end normally. Any other error under mpirun is one rank's alone, and
/// its process must take the job down (MPI_Abort) rather than wait for peers.
class SharedBuildError : public BuildError {
public:
    using BuildError::BuildError;
};

template <class Comm>
class BuildRanks {
public:
    explicit BuildRanks(Comm& comm) : comm_(&comm) {}

    Comm& comm() const { return *comm_; }
    int rank() const { return comm_->rank(); }
    int size() const { return comm_->size(); }
    bool is_root() const { return rank() == 0; }
    bool many() const { return size() > 1; }

    template <class Step>
    void locally(Step&& step) {
        if (!many()) {
            step();
            return;
        }
        if (failure_) return;
        try {
            step();
        } catch (const BuildError& e) {
            failure_ = parallel::Failure{rank(), e.kind() == BuildError::Kind::request ? 2 : 1, e.what()};
        } catch (const std::exception& e) {
            failure_ = parallel::Failure{rank(), 1, e.what()};
        } catch (...) {
            failure_ = parallel::Failure{rank(), 1, "an unknown exception"};
        }
    }

    void agree() {
        if (!many()) return;
        const std::optional<parallel::Failure> first = comm_->first_failure(failure_);
        if (!first) return;
        throw SharedBuildError(first->code == 2 ? BuildError::Kind::request : BuildError::Kind::input,
                               first->message + " (rank " + std::to_string(first->rank) + " of " +
                                   std::to_string(size()) + ")");
    }

    /// Every rank must hold rank 0's `value` of `what` (the settings: the same
    /// checkpoint, calibration and options everywhere); a rank that differs
    /// fails, naming what.
    void agree_on(const std::string& what, const std::string& value) {
        if (!many()) return;
        std::string root = value;
        comm_->broadcast(root, 0);
        locally([&] {
            if (root != value)
                refuse_input(what, " differ from rank 0's: every rank must be started with the same options and see "
                                   "the same --model and calibration files");
        });
        agree();
    }

    /// rank 0's bytes, on every rank.
    std::string from_root(std::string bytes) const {
        if (many()) comm_->broadcast(bytes, 0);
        return bytes;
    }

    /// [first, first + count) of n items for this rank.
    std::pair<Index, Index> share(Index n) const {
        const Index first = n * rank() / size(), end = n * (rank() + 1) / size();
        return {first, end - first};
    }

    int owner(Index k) const { return static_cast<int>(k % size()); }

private:
    Comm* comm_;
    std::optional<parallel::Failure> failure_;
};

}  // namespace loranull::pipeline
