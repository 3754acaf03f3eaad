#pragma once
// Safetensors files: the reader (the writers are in safetensors_writer.hpp,
// included here).
//
// The format: an 8-byte little-endian header length N, N bytes of JSON
//   {"__metadata__": {"key": "value", ...},
//    "name": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [begin, end]}, ...}
// then the raw little-endian data; offsets are relative to the end of the
// header. Tensors are row-major on disk. loranull is column-major everywhere
// else, so a 2-D tensor of shape [rows, cols] becomes a HostMatrix with rows x
// cols, transposed here and nowhere else.
//
// The reader trusts nothing: the header length, every dtype, shape and offset
// pair is validated against the file's size (no overflow, no overlap, byte
// count = product(shape) * dtype size) before a single data byte is read.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "loranull/core/error.hpp"
#include "loranull/core/host_matrix.hpp"
#include "loranull/io/dtype.hpp"
#include "loranull/io/safetensors_writer.hpp"

namespace loranull::io {

/// One tensor's entry in the header.
struct TensorInfo {
    std::string name;
    Dtype dtype = Dtype::F32;
    std::vector<std::int64_t> shape;
    std::uint64_t begin = 0;  // byte offsets into the data section
    std::uint64_t end = 0;

    /// The product of the sizes. A shape holding a zero has no elements
    /// whatever its other sizes are (open() accepts [2^40, 2^40, 0]): return 0
    /// before multiplying, so that the other sizes cannot overflow. Otherwise
    /// open() has checked that the product times the dtype size is the tensor's
    /// byte count, so it fits.
    std::int64_t element_count() const {
        if (std::find(shape.begin(), shape.end(), std::int64_t(0)) != shape.end()) return 0;
        std::int64_t count = 1;
        for (auto d : shape) count *= d;
        return count;
    }
};

/// A safetensors file opened for reading; the header is parsed and validated
/// at open, tensors are read on demand.
class SafetensorsReader {
public:
    /// Largest header accepted (the reference implementation's limit).
    static constexpr std::uint64_t max_header_bytes = 100'000'000;

    explicit SafetensorsReader(std::filesystem::path path) : path_(std::move(path)) {
        const std::string where = "io::SafetensorsReader(" + path_.string() + ")";
        std::ifstream in(path_, std::ios::binary);
        require(bool(in), where, "cannot open the file");
        std::error_code ec;
        const std::uint64_t file_size = std::filesystem::file_size(path_, ec);
        require(!ec, where, "cannot read the file size: ", ec.message());
        require(file_size >= 8, where, "file is ", file_size, " bytes, shorter than the 8-byte header length");

        unsigned char length_bytes[8];
        in.read(reinterpret_cast<char*>(length_bytes), 8);
        std::uint64_t header_bytes = 0;
        for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | length_bytes[i];
        require(header_bytes <= max_header_bytes && header_bytes <= file_size - 8, where, "header length ",
                header_bytes, " exceeds the file (", file_size, " bytes) or the ", max_header_bytes, "-byte limit");

        std::string header(static_cast<std::size_t>(header_bytes), '\0');
        in.read(header.data(), static_cast<std::streamsize>(header_bytes));
        require(bool(in), where, "could not read the ", header_bytes, "-byte header");
        data_start_ = 8 + header_bytes;
        const std::uint64_t data_bytes = file_size - data_start_;

        nlohmann::json json;
        try {
            // JSON objects may repeat a key and nlohmann keeps the last one
            // silently: a header naming a tensor twice is refused instead.
            std::set<std::string> top_level_keys;
            json = nlohmann::json::parse(header, [&](int depth, nlohmann::json::parse_event_t event,
                                                     nlohmann::json& parsed) {
                if (depth == 1 && event == nlohmann::json::parse_event_t::key &&
                    !top_level_keys.insert(parsed.get<std::string>()).second)
                    fail(where, "the header names '", parsed.get<std::string>(), "' twice");
                return true;
            });
        } catch (const nlohmann::json::exception& e) {
            fail(where, "header is not valid JSON: ", e.what());
        }
        require(json.is_object(), where, "header is not a JSON object");

        for (const auto& [name, entry] : json.items()) {
            if (name == "__metadata__") {
                require(entry.is_object(), where, "__metadata__ is not an object");
                for (const auto& [key, value] : entry.items()) {
                    require(value.is_string(), where, "__metadata__ value of '", key, "' is not a string");
                    metadata_[key] = value.get<std::string>();
                }
                continue;
            }
            tensors_.emplace(name, parse_entry(name, entry, data_bytes, where));
        }
        check_no_overlap(where);
    }

    const std::filesystem::path& path() const { return path_; }
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
    bool contains(const std::string& name) const { return tensors_.count(name) != 0; }

    const TensorInfo& info(const std::string& name) const {
        auto it = tensors_.find(name);
        require(it != tensors_.end(), "io::SafetensorsReader::info", "no tensor '", name, "' in ", path_.string());
        return it->second;
    }

    /// A floating-point tensor of shape [rows, cols] (or [n], read as n x 1) as
    /// a column-major HostMatrix<T>; F16, BF16, F32 and F64 are converted.
    template <Real T>
    HostMatrix<T> read_matrix(const std::string& name) const {
        const TensorInfo& t = info(name);
        const std::string where = "io::SafetensorsReader::read_matrix(" + name + ")";
        require(is_floating(t.dtype), where, "dtype ", dtype_name(t.dtype), " is not a floating-point type");
        require(t.shape.size() == 1 || t.shape.size() == 2, where, "tensor has ", t.shape.size(),
                " dimensions, expected 1 or 2");
        const Index rows = static_cast<Index>(t.shape[0]);
        const Index cols = t.shape.size() == 2 ? static_cast<Index>(t.shape[1]) : 1;
        HostMatrix<T> out(rows, cols);
        // An empty tensor may still claim a huge size on its other axis
        // ([2^62, 0]): never loop over that axis.
        if (rows == 0 || cols == 0) return out;
        const std::vector<unsigned char> bytes = read_bytes(t);
        for (Index i = 0; i < rows; ++i)
            for (Index j = 0; j < cols; ++j)
                out(i, j) = static_cast<T>(load_float(bytes.data(), i * cols + j, t.dtype));  // row-major on disk
        return out;
    }

    /// An I32 or I64 tensor, flattened in row-major order.
    std::vector<std::int64_t> read_integers(const std::string& name) const {
        const TensorInfo& t = info(name);
        require(t.dtype == Dtype::I32 || t.dtype == Dtype::I64, "io::SafetensorsReader::read_integers",
                "tensor '", name, "' has dtype ", dtype_name(t.dtype), ", expected I32 or I64");
        const std::vector<unsigned char> bytes = read_bytes(t);
        std::vector<std::int64_t> out(static_cast<std::size_t>(t.element_count()));
        for (std::size_t k = 0; k < out.size(); ++k) {
            if (t.dtype == Dtype::I32) out[k] = load_le<std::int32_t>(bytes.data() + 4 * k);
            else out[k] = load_le<std::int64_t>(bytes.data() + 8 * k);
        }
        return out;
    }

    /// Tensor `name`'s bytes, verbatim (row-major, little-endian), streamed
    /// to `out` in chunks of at most 4 MiB: copying a tensor between files
    /// never holds it in memory.
    void copy_tensor(const std::string& name, std::ostream& out) const {
        const char* where = "io::SafetensorsReader::copy_tensor";
        const TensorInfo& t = info(name);
        std::ifstream in(path_, std::ios::binary);
        in.seekg(static_cast<std::streamoff>(data_start_ + t.begin));
        std::vector<char> buffer(std::min<std::uint64_t>(t.end - t.begin, std::uint64_t(1) << 22));
        for (std::uint64_t left = t.end - t.begin; left > 0;) {
            const auto n = static_cast<std::streamsize>(std::min<std::uint64_t>(left, buffer.size()));
            in.read(buffer.data(), n);
            require(in.gcount() == n, where, "could not read tensor '", name, "' from ", path_.string(),
                    " (file changed since it was opened?)");
            out.write(buffer.data(), n);
            left -= static_cast<std::uint64_t>(n);
        }
    }

private:
    template <class Int>
    static Int load_le(const unsigned char* p) {
        std::make_unsigned_t<Int> v = 0;
        for (int i = int(sizeof(Int)) - 1; i >= 0; --i) v = (v << 8) | p[i];
        return static_cast<Int>(v);
    }

    static double load_float(const unsigned char* bytes, Index k, Dtype dtype) {
        switch (dtype) {
            case Dtype::F64: return std::bit_cast<double>(load_le<std::uint64_t>(bytes + 8 * k));
            case Dtype::F32: return std::bit_cast<float>(load_le<std::uint32_t>(bytes + 4 * k));
            case Dtype::F16: return f16_to_float(load_le<std::uint16_t>(bytes + 2 * k));
            case Dtype::BF16: return bf16_to_float(load_le<std::uint16_t>(bytes + 2 * k));
            default: fail("io::SafetensorsReader", "not a floating-point dtype: ", dtype_name(dtype));
        }
    }

    static TensorInfo parse_entry(const std::string& name, const nlohmann::json& entry, std::uint64_t data_bytes,
                                  const std::string& where) {
        const std::string what = where + ": tensor '" + name + "'";
        require(entry.is_object() && entry.contains("dtype") && entry.contains("shape") &&
                    entry.contains("data_offsets"),
                what, "entry needs dtype, shape and data_offsets");
        require(entry["dtype"].is_string(), what, "dtype is not a string");
        TensorInfo t;
        t.name = name;
        // parse_dtype's own message would not name the file and the tensor.
        const std::string dtype = entry["dtype"].get<std::string>();
        try {
            t.dtype = parse_dtype(dtype);
        } catch (const error&) {
            fail(what, "unsupported dtype '", dtype.substr(0, 16), dtype.size() > 16 ? "...'" : "'",
                 " (known: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)");
        }

        const auto& shape = entry["shape"];
        require(shape.is_array() && shape.size() <= 8, what, "shape is not an array of at most 8 sizes");
        std::uint64_t count = 1;
        for (const auto& d : shape) {
            require(d.is_number_unsigned() || (d.is_number_integer() && d.get<std::int64_t>() >= 0), what,
                    "shape holds something other than a non-negative integer");
            const auto size = d.get<std::uint64_t>();
            require(size <= std::uint64_t(std::numeric_limits<std::int64_t>::max()) &&
                        (size == 0 || count <= std::numeric_limits<std::uint64_t>::max() / size),
                    what, "shape overflows");
            count *= size;
            t.shape.push_back(static_cast<std::int64_t>(size));
        }

        const auto& offsets = entry["data_offsets"];
        require(offsets.is_array() && offsets.size() == 2 && offsets[0].is_number_unsigned() &&
                    offsets[1].is_number_unsigned(),
                what, "data_offsets is not a pair of non-negative integers");
        t.begin = offsets[0].get<std::uint64_t>();
        t.end = offsets[1].get<std::uint64_t>();
        require(t.begin <= t.end && t.end <= data_bytes, what, "data_offsets [", t.begin, ", ", t.end,
                ") fall outside the ", data_bytes, "-byte data section");
        const std::uint64_t element = dtype_size(t.dtype);
        require(count <= std::numeric_limits<std::uint64_t>::max() / element && count * element == t.end - t.begin,
                what, "holds ", t.end - t.begin, " bytes, but shape and dtype ", dtype_name(t.dtype), " need ",
                count, " x ", element);
        return t;
    }

    void check_no_overlap(const std::string& where) const {
        std::vector<const TensorInfo*> by_offset;
        for (const auto& [name, t] : tensors_)
            if (t.end > t.begin) by_offset.push_back(&t);
        std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
        for (std::size_t i = 1; i < by_offset.size(); ++i)
            require(by_offset[i]->begin >= by_offset[i - 1]->end, where, "tensors '", by_offset[i - 1]->name,
                    "' and '", by_offset[i]->name, "' overlap");
    }

    std::vector<unsigned char> read_bytes(const TensorInfo& t) const {
        std::vector<unsigned char> bytes(static_cast<std::size_t>(t.end - t.begin));
        std::ifstream in(path_, std::ios::binary);
        in.seekg(static_cast<std::streamoff>(data_start_ + t.begin));
        in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
        require(bool(in) || bytes.empty(), "io::SafetensorsReader", "could not read tensor '", t.name, "' from ",
                path_.string(), " (file changed since it was opened?)");
        return bytes;
    }

    std::filesystem::path path_;
    std::uint64_t data_start_ = 0;
    std::map<std::string, std::string> metadata_;
    std::map<std::string, TensorInfo> tensors_;
};

}  // namespace loranull::io
