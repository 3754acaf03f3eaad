#pragma once
// One layer of loranull-init: W and its calibration data read (finite), the
// covariance accumulated or taken as given, the method's factors computed in
// double through the library's one dispatch (lora/methods.hpp).

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <loranull/loranull.hpp>

#include "../tool_options.hpp"
#include "layers.hpp"

namespace loranull::tools::init {

using Mat = CpuBackend::Matrix<double>;

inline Mat read_finite(CpuBackend& cpu, const io::SafetensorsReader& reader, const std::string& name, const std::string& what) {
    const HostMatrix<double> host = reader.read_matrix<double>(name);
    if (!all_finite(host.data(), host.size()))
        tool_fail(what, " ", reader.path().string(), ": tensor '", name, "' holds NaN or Inf");
    return cpu.upload(host);
}

/// A covariance given as a file: symmetric to 1e-5 (relative), symmetrised.
inline Mat read_covariance(CpuBackend& cpu, const io::SafetensorsReader& data, const std::string& name) {
    const Mat c = read_finite(cpu, data, name, "--covariance");
    Mat asymmetry = c;
    cpu.axpy(-1.0, cpu.transpose(c), asymmetry);
    const double size = cpu.frobenius_norm(c), skew = cpu.frobenius_norm(asymmetry);
    if (skew > 1e-5 * size)
        tool_fail("--covariance ", data.path().string(), ": '", name, "' is not symmetric (||C - C^T|| / ||C|| = ",
                  skew / size, ")");
    Mat symmetric = c;  // (C + C^T) / 2
    cpu.axpy(1.0, cpu.transpose(c), symmetric);
    cpu.scale(0.5, symmetric);
    return symmetric;
}

struct LayerResult {
    LoraFactors<CpuBackend, double> factors;
    std::string note;                   // appended to the layer's progress line
    std::optional<std::string> warning;  // a rank-deficient covariance
};

/// The factors of `method` for `layer`. `data` is the activations or
/// covariance file when the method needs data (`activations` says which).
inline LayerResult initialise_layer(CpuBackend& cpu, const io::SafetensorsReader& weights,
                                    const io::SafetensorsReader* data, bool activations, const Layer& layer,
                                    const MethodInfo& method, const LoraConfig& config) {
    LayerResult result;
    const Mat w = read_finite(cpu, weights, layer.name + ".weight", "--weights");
    std::optional<Covariance<CpuBackend, double>> accumulated;  // from activations: C = X^T X / tokens
    std::optional<Mat> given;                                   // from a covariance file
    std::optional<NullSpace<CpuBackend, double>> basis;
    MethodData<CpuBackend, double> source;
    if (method.needs_data) {
        if (activations) {
            const Mat x = read_finite(cpu, *data, layer.name, "--activations");  // tokens x n
            accumulated.emplace(cpu, layer.n, Normalisation::plain, data->path().string() + ":" + layer.name);
            accumulated->add(cpu.transpose(x));  // n x tokens
            source.covariance = &*accumulated;
        } else {
            given = read_covariance(cpu, *data, layer.name);
            source.covariance_matrix = &*given;
        }
    }
    if (method.method == Method::lora_null) {
        basis = accumulated ? null_space(*accumulated, config.rank) : null_space(cpu, *given, config.rank);
        if (basis->rank_report.deficient)
            result.warning = "warning: layer '" + layer.name + "': " + basis->rank_report.message();
        char fraction[32];
        std::snprintf(fraction, sizeof fraction, "%.2e", basis->energy_fraction());
        result.note = std::string(", null-space energy fraction ") + fraction;
        source.null_space = &*basis;
    }
    result.factors = initialise(cpu, w, method.method, source, config);
    const auto& f = result.factors;
    if (!cpu.all_finite(f.A) || !cpu.all_finite(f.B) || !cpu.all_finite(f.W_res))
        tool_fail("layer '", layer.name, "': the ", method.name, " initialisation produced NaN or Inf");
    char error[64];
    std::snprintf(error, sizeof error, "%.1e", reconstruction_error(cpu, w, f));
    result.note = std::string(", ||W - W_res - s B A|| / ||W|| = ") + error + " (double)" + result.note;
    return result;
}

}  // namespace loranull::tools::init
