#pragma once
// Writing safetensors files (the format: safetensors.hpp).
//
//   write_safetensors  the streaming writer: the header is computed from the
//                      planned names, dtypes and shapes, then each tensor's
//                      bytes are produced by its own callback, one tensor at a
//                      time, straight into the file. Memory is bounded by the
//                      largest tensor a callback builds (nothing if it copies
//                      bytes from another file), so a whole model can be
//                      rewritten shard by shard.
//   encode_row_major   a column-major matrix as row-major bytes of a dtype
//                      (F64, F32, F16, BF16; F16/BF16 round to nearest even,
//                      once, from the matrix's own precision):
//                      the one encoder of floating-point tensors.
//   SafetensorsWriter  collects small tensors in memory, then writes them with
//                      write_safetensors.
//
// Every file is published through io::write_file_atomically (PATH.tmp,
// fsync, rename): complete or absent.

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <ostream>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "loranull/core/error.hpp"
#include "loranull/core/host_matrix.hpp"
#include "loranull/io/atomic_file.hpp"
#include "loranull/io/dtype.hpp"

namespace loranull::io {

/// One tensor of a file being written: what the header says, and a callback
/// that writes exactly bytes() bytes of data (row-major, little-endian).
struct StreamedTensor {
    std::string name;
    Dtype dtype = Dtype::F32;
    std::vector<std::int64_t> shape;
    std::function<void(std::ostream&)> write;

    std::uint64_t bytes() const {
        std::uint64_t count = 1;
        for (auto d : shape) count *= static_cast<std::uint64_t>(d);
        return count * dtype_size(dtype);
    }
};

/// The file of `tensors` (in their order) with `metadata` as __metadata__,
/// streamed into `out`. A callback that writes more or fewer bytes than its
/// tensor's size is an error, named (`file` names the destination).
inline void encode_safetensors(std::ostream& out, const std::string& file,
                               const std::map<std::string, std::string>& metadata,
                               const std::vector<StreamedTensor>& tensors) {
    const char* where = "io::write_safetensors";
    nlohmann::json header = nlohmann::json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    std::uint64_t offset = 0;
    for (const StreamedTensor& t : tensors) {
        require(!t.name.empty() && t.name != "__metadata__", where, "invalid tensor name '", t.name, "'");
        require(!header.contains(t.name), where, "tensor '", t.name, "' added twice");
        header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes()}}};
        offset += t.bytes();
    }
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');  // align the data section to 8 bytes
    unsigned char length[8];
    for (int i = 0; i < 8; ++i) length[i] = static_cast<unsigned char>(std::uint64_t(text.size()) >> (8 * i));
    out.write(reinterpret_cast<const char*>(length), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const StreamedTensor& t : tensors) {
        const auto before = out.tellp();
        errno = 0;
        t.write(out);
        if (!out) {  // the disk, not the writer: say so, as write_file_atomically does
            const int error = errno;
            fail(where, "cannot write ", file, " (at tensor '", t.name, "': ", detail::write_error_text(error), ")");
        }
        require(static_cast<std::uint64_t>(out.tellp() - before) == t.bytes(), where, "tensor '", t.name, "' of ", file,
                ": its writer produced ", std::int64_t(out.tellp() - before), " bytes, the header promises ", t.bytes());
    }
}

/// Writes `tensors` in their order, with `metadata` as __metadata__, to `path`
/// (atomically): nothing is published when a tensor's writer fails.
inline void write_safetensors(const std::filesystem::path& path, const std::map<std::string, std::string>& metadata,
                              const std::vector<StreamedTensor>& tensors) {
    write_file_atomically(path, [&](std::ostream& out) { encode_safetensors(out, path.string(), metadata, tensors); });
}

/// m (rows x cols, column-major) written row by row as `dtype` (F64, F32, F16,
/// BF16): a [rows, cols] tensor's data. Rows go 16 at a time, so that the
/// column-major source is read along its columns (contiguous) rather than
/// across them.
template <Real T>
void encode_row_major(const HostMatrix<T>& m, Dtype dtype, std::ostream& out) {
    require(is_floating(dtype), "io::encode_row_major", "cannot store a matrix as ", dtype_name(dtype));
    const std::size_t size = dtype_size(dtype), cols = static_cast<std::size_t>(m.cols());
    constexpr Index rows_per_pass = 16;
    std::vector<unsigned char> rows(rows_per_pass * cols * size);
    auto encode = [&](auto bits_of) {
        for (Index i0 = 0; i0 < m.rows(); i0 += rows_per_pass) {
            const Index count = std::min(rows_per_pass, m.rows() - i0);
            for (Index j = 0; j < m.cols(); ++j) {
                const T* column = m.data() + j * m.rows() + i0;
                for (Index i = 0; i < count; ++i) {
                    const std::uint64_t bits = bits_of(double(column[i]));
                    unsigned char* at = rows.data() + (static_cast<std::size_t>(i) * cols + static_cast<std::size_t>(j)) * size;
                    for (std::size_t b = 0; b < size; ++b) at[b] = static_cast<unsigned char>(bits >> (8 * b));
                }
            }
            out.write(reinterpret_cast<const char*>(rows.data()), static_cast<std::streamsize>(count * cols * size));
        }
    };
    switch (dtype) {
        case Dtype::F64: encode([](double v) { return std::bit_cast<std::uint64_t>(v); }); break;
        case Dtype::F32: encode([](double v) { return std::uint64_t(std::bit_cast<std::uint32_t>(static_cast<float>(v))); }); break;
        case Dtype::F16: encode([](double v) { return std::uint64_t(float_to_f16(double_to_float_round_to_odd(v))); }); break;
        case Dtype::BF16: encode([](double v) { return std::uint64_t(float_to_bf16(double_to_float_round_to_odd(v))); }); break;
        default: break;
    }
}

/// Collects tensors in memory, then writes them in one go (write_safetensors).
class SafetensorsWriter {
public:
    /// A matrix as a 2-D tensor [rows, cols], stored as `dtype` (F32, F64, F16
    /// or BF16; F16/BF16 round to nearest even).
    template <Real T>
    void add(const std::string& name, const HostMatrix<T>& m, Dtype dtype) {
        require(is_floating(dtype), "io::SafetensorsWriter::add", "cannot store '", name, "' as ", dtype_name(dtype));
        Entry& e = new_entry(name, dtype, {m.rows(), m.cols()});
        std::ostringstream bytes;
        encode_row_major(m, dtype, bytes);
        e.bytes = std::move(bytes).str();
    }

    /// A matrix stored in its own precision (F32 for float, F64 for double).
    template <Real T>
    void add(const std::string& name, const HostMatrix<T>& m) {
        add(name, m, std::is_same_v<T, float> ? Dtype::F32 : Dtype::F64);
    }

    /// Integers as I64 (or I32) with the given shape (row-major).
    void add_integers(const std::string& name, const std::vector<std::int64_t>& values,
                      std::vector<std::int64_t> shape, Dtype dtype = Dtype::I64) {
        require(dtype == Dtype::I64 || dtype == Dtype::I32, "io::SafetensorsWriter::add_integers",
                "dtype must be I32 or I64");
        std::int64_t count = 1;
        for (auto d : shape) count *= d;
        require(count == static_cast<std::int64_t>(values.size()), "io::SafetensorsWriter::add_integers",
                "shape holds ", count, " values, got ", values.size());
        Entry& e = new_entry(name, dtype, std::move(shape));
        const std::size_t size = dtype_size(dtype);
        e.bytes.resize(values.size() * size);
        for (std::size_t k = 0; k < values.size(); ++k) {
            auto v = static_cast<std::uint64_t>(values[k]);
            for (std::size_t b = 0; b < size; ++b) e.bytes[k * size + b] = static_cast<char>(v >> (8 * b));
        }
    }

    void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

    void write(const std::filesystem::path& path) const { write_safetensors(path, metadata_, streamed()); }

    /// The file's bytes, as write() would publish them (to send elsewhere).
    std::string bytes() const {
        std::ostringstream out;
        encode_safetensors(out, "(in memory)", metadata_, streamed());
        return std::move(out).str();
    }

private:
    struct Entry;
    std::vector<StreamedTensor> streamed() const {
        std::vector<StreamedTensor> tensors;
        for (const Entry& e : entries_)
            tensors.push_back({e.name, e.dtype, e.shape, [&e](std::ostream& out) {
                                   out.write(e.bytes.data(), static_cast<std::streamsize>(e.bytes.size()));
                               }});
        return tensors;
    }

    struct Entry {
        std::string name;
        Dtype dtype;
        std::vector<std::int64_t> shape;
        std::string bytes;  // little-endian, row-major
    };

    Entry& new_entry(const std::string& name, Dtype dtype, std::vector<std::int64_t> shape) {
        require(!name.empty() && name != "__metadata__", "io::SafetensorsWriter", "invalid tensor name '", name, "'");
        for (const auto& e : entries_)
            require(e.name != name, "io::SafetensorsWriter", "tensor '", name, "' added twice");
        entries_.push_back({name, dtype, std::move(shape), {}});
        return entries_.back();
    }

    std::map<std::string, std::string> metadata_;
    std::vector<Entry> entries_;  // in the order added; data written in that order
};

}  // namespace loranull::io
