#pragma once
// What the block-streamed adapter builder is asked to do (BuildOptions), how
// it says no (BuildError), and the small pure helpers its settings need.
//
// The builder's errors are addressed to the person who asked for the build,
// not to a programmer: they start with the option or file at fault
// ("--calib x.safetensors: tensor 'input_ids' has dtype F32, ...") and carry no
// "loranull::<function>:" prefix. BuildError::Kind says whose mistake it is: a
// request that cannot be met (an option: loranull-build exits 2) or an input
// that is wrong (a file, the data, a computation: exit 1).

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "loranull/core/error.hpp"
#include "loranull/core/hash.hpp"
#include "loranull/core/types.hpp"
#include "loranull/io/dtype.hpp"
#include "loranull/linalg/covariance.hpp"
#include "loranull/lora/methods.hpp"

namespace loranull::pipeline {

class BuildError : public error {
public:
    enum class Kind { request, input };
    BuildError(Kind kind, const std::string& message) : error(message), kind_(kind) {}
    Kind kind() const { return kind_; }

private:
    Kind kind_;
};

/// A request that cannot be met (loranull-build: exit 2).
template <class... Parts>
[[noreturn]] void refuse_request(Parts&&... parts) {
    throw BuildError(BuildError::Kind::request, loranull::detail::concat(std::forward<Parts>(parts)...));
}

/// An input that is wrong, or a computation that failed (exit 1).
template <class... Parts>
[[noreturn]] void refuse_input(Parts&&... parts) {
    throw BuildError(BuildError::Kind::input, loranull::detail::concat(std::forward<Parts>(parts)...));
}

/// Everything a build depends on. Paths are as the user gave them: messages
/// quote them back.
struct BuildOptions {
    std::string model;              // HF LLaMA folder
    std::string calib;              // safetensors with input_ids [samples, seq_len]; empty: none
    std::string calib_text;         // or text (lines / JSONL) tokenized with the model's tokenizer
    std::string text_format;        // lines or jsonl; empty: by the file's extension
    std::string text_field = "text";  // JSONL: the field holding each document
    std::string method = "lora-null";  // a name of lora/methods.hpp's table
    std::string out;                // output folder
    Index rank = 0;
    double alpha = 0;               // 0: alpha = rank (s = 1)
    std::uint64_t seed = 0;         // random initialisations; block l uses seed + 7919 l
    Index samples = 0, seq_len = 0;  // first N sequences, first T tokens (0: all)
    Index batch = 0;                // sequences per forward chunk (0: 4096 tokens' worth)
    std::string layers = "all";     // blocks to adapt: "all" or a list "0-3,7" (parse_layer_list)
    Normalisation normalisation = Normalisation::plain;
    // float activations into the double covariances: fp64 (every product
    // exact) or fp32 panels (?ssyrk per chunk summed in double: twice the
    // speed, the knowledge bound to 1e-3 while the null space's eigenvalues
    // stay 1000x above float rounding, warned otherwise; the subspace itself
    // not exactly; docs/math.md, "Accumulation")
    Accumulation accumulation = Accumulation::fp64;
    std::optional<io::Dtype> dtype;  // storage type of the outputs (unset: each tensor's own)
    bool export_plain = false;      // only a rank-2r adapter for the unmodified base
    bool allow_rank_deficient = false;
    bool save_covariances = false;  // OUT/covariances/layer-L.INPUT.safetensors
    bool keep_blocks = false;       // keep OUT/blocks/ after assembly
    bool hidden_on_host = false;    // hidden states in host memory, one batch at a time on the device
    Index stop_after_blocks = -1;   // testing: stop (resumably) after this many blocks
    std::string device = "cpu";     // recorded only: the caller instantiates the builder on its backend

    bool has_calibration() const { return !calib.empty() || !calib_text.empty(); }
    const std::string& calibration_file() const { return calib.empty() ? calib_text : calib; }
    double lora_alpha() const { return alpha > 0 ? alpha : double(rank); }
    double scale() const { return lora_alpha() / double(rank); }
};

/// "all" or a comma-separated list of N and N-M, each within [0, layers):
/// the ascending list of those blocks. `option` names the flag in errors.
inline std::vector<Index> parse_layer_list(const std::string& text, Index layers, const std::string& option = "--layers") {
    std::set<Index> out;
    if (text == "all") {
        for (Index l = 0; l < layers; ++l) out.insert(l);
        return {out.begin(), out.end()};
    }
    auto number = [&](const std::string& digits) {
        Index value = 0;
        bool ok = !digits.empty();
        for (char c : digits) {
            ok = ok && c >= '0' && c <= '9' && value < (Index(1) << 40);
            value = value * 10 + (c - '0');
        }
        if (!ok) refuse_request(option, " expects an integer, got '", digits, "'");
        return value;
    };
    std::stringstream in(text);
    std::string part;
    while (std::getline(in, part, ',')) {
        const auto dash = part.find('-');
        const Index first = number(dash == std::string::npos ? part : part.substr(0, dash));
        const Index last = dash == std::string::npos ? first : number(part.substr(dash + 1));
        if (last < first || last >= layers)
            refuse_request(option, ": '", part, "' is not a range within 0 .. ", layers - 1, " (the model has ", layers,
                           " layers)");
        for (Index l = first; l <= last; ++l) out.insert(l);
    }
    if (out.empty()) refuse_request(option, " selects no layer");
    return {out.begin(), out.end()};
}

inline std::string text_hash(const std::string& text) {
    Fnv1a h;
    h.add(text.data(), text.size());
    return h.hex();
}

inline std::string file_hash(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) refuse_input("cannot read ", path.string());
    Fnv1a h;
    std::vector<char> buffer(1 << 20);
    while (in) {
        in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
        h.add(buffer.data(), static_cast<std::size_t>(in.gcount()));
    }
    return h.hex();
}

}  // namespace loranull::pipeline
