// The NN cases of the parity table (parity_table.hpp) run WITHOUT a GPU: the
// very CudaNnKernels members of CudaBackend (argument checks, output
// allocation and reshaping, launch sequences, functors) on an emulated backend
// whose memory is the host's and whose launches are a host loop, one index
// after another. Linked with test_parity_nn.cpp into test_cuda_nn_emulated, it
// checks the GPU kernels' checks, index arithmetic, layouts and math against
// the CPU kernels on any machine with nvcc.
//
// What it cannot check: the launch itself (grid-stride loop, stream order),
// device memory and the device guard, and CUDA's device math library (exp,
// log, sqrt, pow, cos, sin run as the host's libm here). Those need the GPU:
// test_cuda_parity runs the same cases on CudaBackend.
//
// Every allocation starts as NaN, as stale pool memory could: an entry a
// kernel forgets to write shows up as NaN in the comparison.
#include <limits>
#include <string>
#include <vector>

#include <loranull/backend/cuda/nn_kernels.hpp>
#include <loranull/core/host_matrix.hpp>

#include "parity_device.hpp"
#include "parity_table.hpp"

namespace parity {

// The emulated executable has no GPU half: it reports one "device" so that
// the requires_gpu() cases run.
int device_count() { return 1; }
std::string device_description() { return "none: NN kernels emulated on the host (parity_emulated.cu)"; }

namespace {

/// What CudaNnKernels asks of its backend (nn_kernels.hpp), on host memory.
class EmulatedNnBackend : public loranull::CudaNnKernels<EmulatedNnBackend, HostMatrix> {
public:
    template <class T>
    using Matrix = HostMatrix<T>;

    template <class T>
    HostMatrix<T> allocate(Index rows, Index cols) const {
        return HostMatrix<T>(rows, cols, std::numeric_limits<T>::quiet_NaN());
    }
    template <class T>
    HostMatrix<T> zeros(Index rows, Index cols) const {
        return HostMatrix<T>(rows, cols);
    }
    template <class T>
    HostMatrix<T> upload(const HostMatrix<T>& h) const {
        return h;
    }
    template <class T>
    HostMatrix<T> download(const HostMatrix<T>& m) const {
        return m;
    }

    struct NoGuard {
        ~NoGuard() {}  // user-provided: an unused guard is not an unused variable
    };
    NoGuard make_current(const char*) const { return {}; }
    template <class T>
    bool owns(const HostMatrix<T>&) const {
        return true;
    }

    /// A host copy standing in for the uploaded buffer.
    template <class I>
    struct Buffer {
        std::vector<I> values;
        const void* data() const { return values.data(); }
    };
    template <class I>
    Buffer<I> to_device(const std::vector<I>& values, const char*) const {
        return {values};
    }

    /// Runs f(k) for k = 0 .. count - 1: each "launch" complete before the next.
    struct HostLaunch {
        template <class F>
        void operator()(Index count, const F& f) const {
            for (Index k = 0; k < count; ++k) f(k);
        }
    };
    HostLaunch launcher(const char*) const { return {}; }
};

EmulatedNnBackend& emulated() {
    static EmulatedNnBackend instance;
    return instance;
}

}  // namespace

template <class Case, class T>
typename Case::template Result<T> run_on_device(const typename Case::template Item<T>& item) {
    return Case::template run<T>(emulated(), item);
}

LORANULL_PARITY_NN_CASES(LORANULL_PARITY_INSTANTIATE)

}  // namespace parity
