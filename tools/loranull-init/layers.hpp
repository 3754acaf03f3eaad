#pragma once
// loranull-init's inputs: the layers of the weights file (every 2-D tensor
// NAME.weight) and each layer's calibration data (activations [tokens, n] or
// a covariance [n, n]), every one found and checked before anything is computed.

#include <algorithm>
#include <string>
#include <vector>

#include <loranull/io/safetensors.hpp>

#include "../tool_options.hpp"

namespace loranull::tools::init {

struct Layer {
    std::string name;    // NAME (the tensor is NAME.weight)
    Index m = 0, n = 0;  // W is m x n
    io::Dtype dtype = io::Dtype::F32;
};

/// The data of a layer's tensor in X or C, checked for presence and shape.
inline void check_data_tensor(const io::SafetensorsReader& data, const std::string& flag, const Layer& layer, bool square) {
    const std::string file = data.path().string();
    if (!data.contains(layer.name))
        tool_fail(flag, " ", file, " has no tensor '", layer.name, "' for layer '", layer.name, "' (every layer needs one)");
    const io::TensorInfo& t = data.info(layer.name);
    if (!io::is_floating(t.dtype))
        tool_fail(flag, " ", file, ": tensor '", layer.name, "' has dtype ", io::dtype_name(t.dtype),
                  ", expected F32, F64, F16 or BF16");
    if (t.shape.size() != 2)
        tool_fail(flag, " ", file, ": tensor '", layer.name, "' has ", t.shape.size(), " dimensions, expected 2 (",
                  square ? "[n, n]" : "[tokens, n]", ")");
    if (square && (t.shape[0] != layer.n || t.shape[1] != layer.n))
        tool_fail(flag, " ", file, ": covariance '", layer.name, "' is [", t.shape[0], ", ", t.shape[1], "], but W '",
                  layer.name, ".weight' is [", layer.m, ", ", layer.n, "]: expected [", layer.n, ", ", layer.n, "]");
    if (!square && t.shape[1] != layer.n)
        tool_fail(flag, " ", file, ": activations '", layer.name, "' are [", t.shape[0], ", ", t.shape[1], "], but W '",
                  layer.name, ".weight' is [", layer.m, ", ", layer.n, "]: expected [tokens, ", layer.n,
                  "] (n = ", layer.n, " columns)");
    if (!square && t.shape[0] < 1) tool_fail(flag, " ", file, ": activations '", layer.name, "' hold no tokens");
}

/// Every layer of `weights`, checked against `rank` and (when given) `data`;
/// `ignored` receives the tensors that are not layers.
inline std::vector<Layer> find_layers(const io::SafetensorsReader& weights, Index rank, const io::SafetensorsReader* data,
                                      const std::string& data_flag, bool square, std::vector<std::string>& ignored) {
    const std::string file = weights.path().string(), suffix = ".weight";
    std::vector<Layer> layers;
    for (const auto& [name, info] : weights.tensors()) {
        const bool is_weight =
            name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
        if (!is_weight || info.shape.size() != 2) {
            ignored.push_back(name);
            continue;
        }
        const Layer layer{name.substr(0, name.size() - suffix.size()), info.shape[0], info.shape[1], info.dtype};
        if (!io::is_floating(info.dtype))
            tool_fail("--weights ", file, ": layer '", name, "' has dtype ", io::dtype_name(info.dtype),
                      ", expected F32, F64, F16 or BF16");
        if (layer.m < 1 || layer.n < 1) tool_fail("--weights ", file, ": layer '", name, "' is empty ([", layer.m, ", ", layer.n, "])");
        if (rank > std::min(layer.m, layer.n))
            tool_fail("--rank ", rank, " exceeds min(m, n) = ", std::min(layer.m, layer.n), " of layer '", name, "' [",
                      layer.m, ", ", layer.n, "]");
        if (data) check_data_tensor(*data, data_flag, layer, square);
        layers.push_back(layer);
    }
    if (layers.empty())
        tool_fail("--weights ", file, " holds no layer: no 2-D tensor named NAME.weight (", weights.tensors().size(),
                  " tensors in the file)");
    return layers;
}

}  // namespace loranull::tools::init
