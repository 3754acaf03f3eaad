// Uses the umbrella header as an outside project would, and checks one result.
#include <loranull/loranull.hpp>

#include <cstdio>

int main() {
    loranull::CpuBackend cpu;
    loranull::Rng rng(1);
    loranull::Covariance<loranull::CpuBackend> covariance(cpu, 8);
    covariance.add(cpu.upload(loranull::random_normal<float>(8, 64, rng)));
    const auto null_space = loranull::null_space(covariance, 2);
    std::printf("consumer: null space %td x %td, energy fraction %.3g\n", null_space.dim(), null_space.rank(),
                null_space.energy_fraction());
    return null_space.rank() == 2 && null_space.energy_fraction() < 0.25 ? 0 : 1;
}
