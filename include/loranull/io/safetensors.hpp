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
// count = product(shape) * dtype size) before a single data byte is read. Nor
// does it trust the file to stay as it was: every read first checks that the
// path still names the file it opened (device, inode, size, modification
// time), so a file replaced, rewritten or truncated while a long run reads it
// is refused by name instead of read half old, half new.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "loranull/core/error.hpp"
#include "loranull/core/hash.hpp"
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

namespace detail {

/// A file open for reading (POSIX descriptor, closed on destruction) and what
/// identifies it: the same device, inode, size and modification time mean the
/// same bytes, as far as a reader can tell without reading them all.
class ReadOnlyFile {
public:
    struct Identity {
        dev_t device = 0;
        ino_t inode = 0;
        off_t bytes = 0;
        std::int64_t modified_ns = 0;
        bool operator==(const Identity&) const = default;
    };

    ReadOnlyFile(const std::filesystem::path& path, const std::string& where)
        : fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
        require(fd_ >= 0, where, "cannot open the file: ", std::generic_category().message(errno));
        struct stat st {};
        require(::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode), where, "is not a regular file");
        identity_ = {st.st_dev, st.st_ino, st.st_size,
                     std::int64_t(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec};
    }
    ReadOnlyFile(ReadOnlyFile&& other) noexcept : fd_(std::exchange(other.fd_, -1)), identity_(other.identity_) {}
    ReadOnlyFile& operator=(ReadOnlyFile&&) = delete;
    ~ReadOnlyFile() {
        if (fd_ >= 0) ::close(fd_);
    }

    const Identity& identity() const { return identity_; }
    std::uint64_t size() const { return static_cast<std::uint64_t>(identity_.bytes); }

    /// n bytes at `offset` into `out`; false if the file ends first.
    bool read_at(std::uint64_t offset, void* out, std::size_t n) const {
        auto* p = static_cast<char*>(out);
        while (n > 0) {
            const ssize_t got = ::pread(fd_, p, n, static_cast<off_t>(offset));
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) return false;
            p += got, n -= static_cast<std::size_t>(got), offset += static_cast<std::uint64_t>(got);
        }
        return true;
    }

private:
    int fd_;
    Identity identity_;
};

}  // namespace detail

/// A safetensors file opened for reading; the header is parsed and validated
/// at open, tensors are read on demand.
class SafetensorsReader {
public:
    /// Largest header accepted (the reference implementation's limit).
    static constexpr std::uint64_t max_header_bytes = 100'000'000;

    explicit SafetensorsReader(std::filesystem::path path) : path_(std::move(path)) {
        const std::string where = "io::SafetensorsReader(" + path_.string() + ")";
        const detail::ReadOnlyFile in(path_, where);
        identity_ = in.identity();
        const std::uint64_t file_size = in.size();
        require(file_size >= 8, where, "file is ", file_size, " bytes, shorter than the 8-byte header length");

        unsigned char length_bytes[8];
        require(in.read_at(0, length_bytes, 8), where, "could not read the header length");
        std::uint64_t header_bytes = 0;
        for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | length_bytes[i];
        require(header_bytes <= max_header_bytes && header_bytes <= file_size - 8, where, "header length ",
                header_bytes, " exceeds the file (", file_size, " bytes) or the ", max_header_bytes, "-byte limit");

        std::string header(static_cast<std::size_t>(header_bytes), '\0');
        require(in.read_at(8, header.data(), header.size()), where, "could not read the ", header_bytes, "-byte header");
        Fnv1a header_hash;
        header_hash.add(header.data(), header.size());
        header_hash_ = header_hash.value();
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

    /// What the file's content is known by without reading all of it (16 hex
    /// digits, the same on every machine): the hash of its header, its size
    /// and 16 slices of 4 KiB spread evenly over its data. Two checkpoints of
    /// one architecture with other weights differ in it.
    std::string fingerprint() const {
        const char* where = "io::SafetensorsReader::fingerprint";
        const detail::ReadOnlyFile in = reopen(where);
        Fnv1a h;
        h.add(&header_hash_, sizeof header_hash_);
        const std::uint64_t size = in.size(), data_bytes = size - data_start_, slice = 4096, slices = 16;
        h.add(&size, sizeof size);
        std::vector<char> buffer(slice);
        for (std::uint64_t k = 0; k < slices && data_bytes > 0; ++k) {
            const std::uint64_t at = data_start_ + (data_bytes > slice ? (data_bytes - slice) * k / (slices - 1) : 0);
            const auto n = static_cast<std::size_t>(std::min(slice, size - at));
            require(in.read_at(at, buffer.data(), n), where, "could not read ", path_.string(),
                    " (the file is shorter than when it was opened)");
            h.add(buffer.data(), n);
        }
        return h.hex();
    }
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
        const detail::ReadOnlyFile in = reopen(where);
        std::vector<char> buffer(std::min<std::uint64_t>(t.end - t.begin, std::uint64_t(1) << 22));
        for (std::uint64_t at = data_start_ + t.begin, left = t.end - t.begin; left > 0;) {
            const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(left, buffer.size()));
            require(in.read_at(at, buffer.data(), n), where, "could not read tensor '", name, "' from ",
                    path_.string(), " (the file is shorter than when it was opened)");
            out.write(buffer.data(), static_cast<std::streamsize>(n));
            at += n, left -= n;
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
        const detail::ReadOnlyFile in = reopen("io::SafetensorsReader");
        require(in.read_at(data_start_ + t.begin, bytes.data(), bytes.size()), "io::SafetensorsReader",
                "could not read tensor '", t.name, "' from ", path_.string(),
                " (the file is shorter than when it was opened)");
        return bytes;
    }

    /// The file again, refused if it is no longer the one the header was read from.
    detail::ReadOnlyFile reopen(const std::string& where) const {
        detail::ReadOnlyFile in(path_, where + ": " + path_.string());
        const auto& now = in.identity();
        const char* rule = "): a file must not change while loranull reads it";
        if (now.device != identity_.device || now.inode != identity_.inode)
            fail(where, path_.string(), " changed since it was opened (replaced by another file", rule);
        if (now.bytes != identity_.bytes)
            fail(where, path_.string(), " changed since it was opened (its size went from ", identity_.bytes, " to ",
                 now.bytes, " bytes", rule);
        if (now != identity_)
            fail(where, path_.string(), " changed since it was opened (rewritten: its modification time changed", rule);
        return in;
    }

    std::filesystem::path path_;
    detail::ReadOnlyFile::Identity identity_;
    std::uint64_t header_hash_ = 0;
    std::uint64_t data_start_ = 0;
    std::map<std::string, std::string> metadata_;
    std::map<std::string, TensorInfo> tensors_;
};

}  // namespace loranull::io
