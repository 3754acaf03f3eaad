#pragma once
// Saving and loading a Covariance accumulator, as a safetensors file that any
// safetensors reader (numpy, PyTorch) can open:
//
//   tensor "covariance"  [n, n]  F32/F64 (the accumulator's type): the full,
//                        symmetric raw sum S = sum_k X_k X_k^T / c_k^2
//   __metadata__         format = "loranull.covariance/1", dim, tokens, samples,
//                        normalisation ("plain" | "reference"),
//                        reference_divisor, accumulation (f32 | f64: the sum's
//                        type), products (fp64 | fp32-panels: Covariance::
//                        accumulation; absent in older files: fp64), data_id
//
// C = S / tokens (plain) or S / reference_divisor (reference). The raw sum,
// not C, is stored so that a loaded accumulator can keep accumulating and
// merging; the values round-trip bit-exactly.

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>

#include "loranull/core/error.hpp"
#include "loranull/io/safetensors.hpp"
#include "loranull/linalg/covariance.hpp"

namespace loranull::io {

inline constexpr const char* covariance_format = "loranull.covariance/1";

namespace detail {

inline std::int64_t parse_count(const std::map<std::string, std::string>& meta, const std::string& key,
                                const std::string& where) {
    auto it = meta.find(key);
    require(it != meta.end(), where, "metadata '", key, "' is missing");
    std::int64_t value = 0;
    const auto* end = it->second.data() + it->second.size();
    auto [ptr, ec] = std::from_chars(it->second.data(), end, value);
    require(ec == std::errc() && ptr == end && value >= 0, where, "metadata '", key, "' = '", it->second,
            "' is not a non-negative integer");
    return value;
}

}  // namespace detail

/// The accumulator as a file (safetensors; see the file comment), in memory.
template <class Bk, Real T>
io::SafetensorsWriter covariance_file(const Covariance<Bk, T>& covariance) {
    Bk& b = covariance.backend();
    auto sum = covariance.raw_sum_lower();
    b.symmetrize_lower(sum);
    io::SafetensorsWriter writer;
    writer.add("covariance", b.download(sum));
    const CovarianceInfo& info = covariance.info();
    writer.set_metadata("format", covariance_format);
    writer.set_metadata("dim", std::to_string(covariance.dim()));
    writer.set_metadata("tokens", std::to_string(info.tokens));
    writer.set_metadata("samples", std::to_string(info.samples));
    writer.set_metadata("normalisation", std::string(normalisation_name(info.normalisation)));
    char divisor[64];
    auto [end, ec] = std::to_chars(divisor, divisor + sizeof divisor, info.reference_divisor);  // shortest exact
    writer.set_metadata("reference_divisor", std::string(divisor, end));
    writer.set_metadata("accumulation", std::string(scalar_name<T>()));
    writer.set_metadata("products", std::string(accumulation_name(covariance.accumulation())));
    writer.set_metadata("data_id", info.data_id);
    return writer;
}

/// Writes `covariance` to `path` (atomically) in the format above.
template <class Bk, Real T>
void save_covariance(const Covariance<Bk, T>& covariance, const std::filesystem::path& path) {
    covariance_file(covariance).write(path);
}

/// Reads an accumulator saved by save_covariance onto backend b. The stored
/// accumulation type must be T (no silent precision change).
template <Real T, class Bk>
Covariance<Bk, T> load_covariance(Bk& b, const std::filesystem::path& path) {
    const std::string where = "load_covariance(" + path.string() + ")";
    io::SafetensorsReader file(path);
    const auto& meta = file.metadata();
    auto get = [&](const std::string& key) {
        auto it = meta.find(key);
        require(it != meta.end(), where, "metadata '", key, "' is missing (not a loranull covariance file?)");
        return it->second;
    };
    require(get("format") == covariance_format, where, "format is '", get("format"), "', expected '",
            covariance_format, "'");
    require(get("accumulation") == scalar_name<T>(), where, "file accumulates in ", get("accumulation"),
            ", loading as ", scalar_name<T>(), " was requested");

    CovarianceInfo info;
    info.normalisation = parse_normalisation(get("normalisation"));
    info.data_id = get("data_id");
    info.tokens = detail::parse_count(meta, "tokens", where);
    info.samples = detail::parse_count(meta, "samples", where);
    const std::string divisor = get("reference_divisor");
    auto [ptr, ec] = std::from_chars(divisor.data(), divisor.data() + divisor.size(), info.reference_divisor);
    require(ec == std::errc() && ptr == divisor.data() + divisor.size() && std::isfinite(info.reference_divisor) &&
                info.reference_divisor > 0,
            where, "reference_divisor '", divisor, "' is not a positive number");
    const std::int64_t dim = detail::parse_count(meta, "dim", where);

    const io::TensorInfo& tensor = file.info("covariance");
    require(tensor.shape.size() == 2 && tensor.shape[0] == dim && tensor.shape[1] == dim, where,
            "tensor 'covariance' does not have shape [", dim, ", ", dim, "]");
    require(tensor.dtype == (std::is_same_v<T, float> ? io::Dtype::F32 : io::Dtype::F64), where,
            "tensor 'covariance' is ", io::dtype_name(tensor.dtype), ", metadata says ", scalar_name<T>());
    const HostMatrix<T> sum = file.read_matrix<T>("covariance");
    require(all_finite(sum.data(), sum.size()), where, "tensor 'covariance' holds NaN or Inf");
    double largest = 0;  // C = S / normaliser must be finite in T too
    for (Index k = 0; k < sum.size(); ++k) largest = std::max(largest, std::abs(double(sum.data()[k])));
    Covariance<Bk, T> covariance(b, b.upload(sum), std::move(info));
    if (const auto it = meta.find("products"); it != meta.end()) {
        require(it->second == "fp64" || it->second == "fp32-panels", where, "metadata 'products' = '", it->second,
                "', expected fp64 or fp32-panels");
        covariance.set_accumulation(parse_accumulation(it->second));
    }
    require(covariance.empty() || largest / covariance.normaliser() <= double(std::numeric_limits<T>::max()), where,
            "tensor 'covariance' divided by ", covariance.normaliser(), " overflows ", scalar_name<T>());
    return covariance;
}

}  // namespace loranull::io
