// loranull-init: the initialisations of loranull from the command line, so that
// a Python user (or a test in another language) can use the library without
// writing C++. Files in, files out, safetensors both ways:
//
//   loranull-init --weights W.safetensors (--activations X.safetensors | --covariance C.safetensors)
//                 --method M --rank R [--alpha A] [--seed S] --out OUT.safetensors
//
// The contract (docs/loranull-init.md) is fixed; `loranull-init --help` prints
// it. Everything is computed in double and cast to the input weights' dtype
// last. Every error is one line on stderr and a non-zero exit (2: the command
// line, 1: the files or the computation); OUT is written completely or not at
// all, and only after every layer has been checked and computed.
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <loranull/loranull.hpp>

#include "../tool_options.hpp"
#include "initialise_layer.hpp"
#include "layers.hpp"
#include "options.hpp"

using namespace loranull;
using namespace loranull::tools;
using namespace loranull::tools::init;

namespace {

bool same_file(const std::filesystem::path& a, const std::filesystem::path& b) {
    std::error_code ec;
    return std::filesystem::exists(b, ec) && std::filesystem::equivalent(a, b, ec);
}

int run(const Options& o) {
    // 1. The method, and the data it needs.
    const MethodInfo* found = find_method(o.method);
    if (!found) throw UsageError(unknown_method_message(o.method));
    const MethodInfo& method = *found;
    const bool has_activations = !o.activations.empty(), has_covariance = !o.covariance.empty();
    if (method.needs_data && !has_activations && !has_covariance)
        throw UsageError("method " + o.method + " needs calibration data: give --activations or --covariance");
    for (const std::string& input : {o.weights, o.activations, o.covariance})
        if (!input.empty() && same_file(input, o.out))
            throw UsageError("--out " + o.out + " is also an input file; write to another file");
    // Notes and warnings are printed once everything succeeded, so that an
    // error is the only line on stderr.
    std::vector<std::string> notes;
    if (!method.needs_data && (has_activations || has_covariance))
        notes.push_back("note: method " + o.method + " uses no data; " +
                        (has_activations ? "--activations" : "--covariance") + " is ignored");

    // 2. Every layer found and checked before anything is computed.
    const io::SafetensorsReader weights(o.weights);
    std::optional<io::SafetensorsReader> data;
    if (method.needs_data) data.emplace(has_activations ? o.activations : o.covariance);
    std::vector<std::string> ignored;
    const std::vector<Layer> layers = find_layers(weights, o.rank, data ? &*data : nullptr,
                                                  has_activations ? "--activations" : "--covariance", has_covariance, ignored);
    if (!ignored.empty())
        notes.push_back("note: ignored " + std::to_string(ignored.size()) + " tensor(s) of " + o.weights +
                        " that are not 2-D NAME.weight (first: '" + ignored.front() + "')");

    // 3. Each layer's factors, in double, cast to the layer's dtype.
    CpuBackend cpu;
    const double alpha = o.alpha > 0 ? o.alpha : double(o.rank);
    const LoraConfig config{o.rank, alpha, o.seed};
    io::SafetensorsWriter out;
    for (const Layer& layer : layers) {
        const LayerResult r = initialise_layer(cpu, weights, data ? &*data : nullptr, has_activations, layer, method, config);
        if (r.warning) notes.push_back(*r.warning);
        out.add(layer.name + ".lora_A.weight", cpu.download(r.factors.A), layer.dtype);
        out.add(layer.name + ".lora_B.weight", cpu.download(r.factors.B), layer.dtype);
        out.add(layer.name + ".weight", cpu.download(r.factors.W_res), layer.dtype);
        std::printf("%s: [%td, %td] %s, rank %td, scale %s%s\n", layer.name.c_str(), layer.m, layer.n,
                    std::string(io::dtype_name(layer.dtype)).c_str(), o.rank, number_text(config.scale()).c_str(),
                    r.note.c_str());
    }

    // 4. OUT, written whole, with what produced it.
    out.set_metadata("format", "loranull.init/1");
    out.set_metadata("method", o.method);
    out.set_metadata("rank", std::to_string(o.rank));
    out.set_metadata("alpha", number_text(alpha));
    out.set_metadata("scale", number_text(config.scale()));
    out.set_metadata("seed", std::to_string(o.seed));
    out.set_metadata("data", !method.needs_data ? "none" : has_activations ? "activations" : "covariance");
    if (method.needs_data && has_activations) out.set_metadata("normalisation", "plain");
    out.write(o.out);
    for (const std::string& note : notes) std::fprintf(stderr, "loranull-init: %s\n", note.c_str());
    std::printf("wrote %zu layer(s) to %s\n", layers.size(), o.out.c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return run_tool("loranull-init", [&] { return run(parse_options(argc, argv)); });
}
