// io/: safetensors reading and writing (round trips, every dtype, every lie a
// header can tell) and covariance files (bit-exact round trips, bad files).
#include <doctest/doctest.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "test_util.hpp"

using namespace loranull;
using test::Mat;
namespace fs = std::filesystem;

namespace {
CpuBackend cpu;

/// A file in a folder of this process: ctest runs the test cases in parallel,
/// each in its own process, and two of them write cov-f64.safetensors.
fs::path temp_path(const std::string& name) {
    struct Folder {
        fs::path path = fs::temp_directory_path() / ("loranull_test_io_" + std::to_string(::getpid()));
        Folder() { fs::create_directories(path); }
        ~Folder() {
            std::error_code ec;
            fs::remove_all(path, ec);
        }
    };
    static const Folder folder;
    return folder.path / name;
}

/// A file made of an 8-byte header length, the given header text and data bytes.
fs::path raw_file(const std::string& name, const std::string& header, std::size_t data_bytes,
                  std::uint64_t claimed_length = UINT64_MAX) {
    const fs::path path = temp_path(name);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    const std::uint64_t length = claimed_length == UINT64_MAX ? header.size() : claimed_length;
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>(length >> (8 * i)));
    out << header;
    out << std::string(data_bytes, '\0');
    return path;
}

std::string open_error(const fs::path& path) {
    return test::error_message([&] { io::SafetensorsReader reader(path); });
}
}  // namespace

TEST_CASE("safetensors: matrices round-trip row-major on disk, all float dtypes, metadata, integers") {
    Rng rng(3);
    HostMatrix<double> a = random_normal<double>(3, 5, rng);
    HostMatrix<float> b = random_normal<float>(4, 2, rng);
    io::SafetensorsWriter writer;
    writer.add("a", a);
    writer.add("b", b);
    writer.add("a_f16", a, io::Dtype::F16);
    writer.add("a_bf16", a, io::Dtype::BF16);
    writer.add("a_f32", a, io::Dtype::F32);
    writer.add_integers("ids", {1, -2, 3, 4, 5, 6}, {2, 3}, io::Dtype::I32);
    writer.set_metadata("who", "test");
    const fs::path path = temp_path("roundtrip.safetensors");
    writer.write(path);
    CHECK_FALSE(fs::exists(path.string() + ".tmp"));

    io::SafetensorsReader reader(path);
    CHECK(reader.metadata().at("who") == "test");
    CHECK(reader.info("a").shape == std::vector<std::int64_t>{3, 5});
    CHECK(reader.info("a").dtype == io::Dtype::F64);
    CHECK(reader.read_matrix<double>("a") == a);  // bit-exact
    CHECK(reader.read_matrix<float>("b") == b);
    HostMatrix<double> f16 = reader.read_matrix<double>("a_f16"), bf16 = reader.read_matrix<double>("a_bf16");
    HostMatrix<float> f32 = reader.read_matrix<float>("a_f32");
    for (Index i = 0; i < 3; ++i)
        for (Index j = 0; j < 5; ++j) {
            CHECK(f16(i, j) == doctest::Approx(a(i, j)).epsilon(1e-3));
            CHECK(bf16(i, j) == doctest::Approx(a(i, j)).epsilon(1e-2));
            CHECK(f32(i, j) == static_cast<float>(a(i, j)));
        }
    CHECK(reader.read_integers("ids") == std::vector<std::int64_t>{1, -2, 3, 4, 5, 6});

    // Row-major on disk: the first data bytes of "a" are a(0, 0) then a(0, 1).
    std::ifstream in(path, std::ios::binary);
    unsigned char len[8];
    in.read(reinterpret_cast<char*>(len), 8);
    std::uint64_t header = 0;
    for (int i = 7; i >= 0; --i) header = (header << 8) | len[i];
    CHECK(header % 8 == 0);  // data section aligned
    const auto& info = reader.info("a");
    in.seekg(static_cast<std::streamoff>(8 + header + info.begin + 8));
    double second = 0;
    in.read(reinterpret_cast<char*>(&second), 8);
    CHECK(second == a(0, 1));

    CHECK_THROWS_AS(reader.read_matrix<float>("ids"), loranull::error);
    CHECK_THROWS_AS(reader.read_integers("a"), loranull::error);
    CHECK(test::error_message([&] { reader.info("missing"); }).find("no tensor 'missing'") != std::string::npos);
    CHECK_THROWS_AS(writer.add("a", a), loranull::error);  // duplicate name
}

TEST_CASE("safetensors reader: every malformed file is a clear error, never a crash") {
    const std::string good = R"({"t":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
    CHECK_NOTHROW(io::SafetensorsReader(raw_file("good.safetensors", good, 16)));

    auto expect = [](const fs::path& path, const char* part) {
        const std::string message = open_error(path);
        INFO(message);
        CHECK(message.find(part) != std::string::npos);
    };
    expect(temp_path("does-not-exist.safetensors"), "cannot open");
    {
        std::ofstream(temp_path("short.safetensors"), std::ios::binary) << "abc";
        expect(temp_path("short.safetensors"), "shorter than the 8-byte header length");
    }
    expect(raw_file("truncated-data.safetensors", good, 15), "fall outside");
    expect(raw_file("header-too-long.safetensors", good, 16, 1000), "header length 1000 exceeds");
    expect(raw_file("header-huge.safetensors", good, 16, UINT64_MAX - 1), "exceeds");
    expect(raw_file("not-json.safetensors", "{\"t\": [", 0), "not valid JSON");
    expect(raw_file("not-object.safetensors", "[1,2]", 0), "not a JSON object");
    expect(raw_file("no-dtype.safetensors", R"({"t":{"shape":[1],"data_offsets":[0,4]}})", 4), "needs dtype");
    expect(raw_file("bad-dtype.safetensors", R"({"t":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}})", 4),
           "unsupported dtype 'Q7'");
    expect(raw_file("size-lie.safetensors", R"({"t":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}})", 16),
           "shape and dtype F32 need 6 x 4");
    expect(raw_file("neg-shape.safetensors", R"({"t":{"dtype":"F32","shape":[-1,4],"data_offsets":[0,16]}})", 16),
           "non-negative integer");
    expect(raw_file("overflow.safetensors",
                    R"({"t":{"dtype":"F64","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}})", 16),
           "overflows");
    expect(raw_file("reversed.safetensors", R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", 16),
           "fall outside");
    expect(raw_file("neg-offset.safetensors", R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", 16),
           "data_offsets");
    expect(raw_file("overlap.safetensors",
                    R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                    16),
           "overlap");
    expect(raw_file("meta.safetensors", R"({"__metadata__":{"k":1}})", 0), "not a string");
    expect(raw_file("twice.safetensors",
                    R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                    8),
           "names 't' twice");
    // A 3-D tensor opens fine but is not a matrix.
    io::SafetensorsReader cube(raw_file("cube.safetensors", R"({"t":{"dtype":"F32","shape":[1,1,1],"data_offsets":[0,4]}})", 4));
    CHECK(test::error_message([&] { cube.read_matrix<float>("t"); }).find("3 dimensions") != std::string::npos);
}

TEST_CASE("safetensors reader: a file that changes after it was opened is refused by name, and fingerprints tell contents apart") {
    const fs::path path = temp_path("changing.safetensors");
    HostMatrix<float> m(64, 64);
    for (Index k = 0; k < m.size(); ++k) m.data()[k] = float(k % 97);
    auto write = [&](float first) {
        m(0, 0) = first;
        io::SafetensorsWriter w;
        w.add("t", m, io::Dtype::F32);
        w.write(path);
    };
    write(1);
    const std::string before = io::SafetensorsReader(path).fingerprint();
    CHECK(io::SafetensorsReader(path).fingerprint() == before);  // the same on every open
    {
        // Replaced: write() publishes by rename, so the path names another inode.
        const io::SafetensorsReader r(path);
        write(2);
        const std::string message = test::error_message([&] { r.read_matrix<float>("t"); });
        CHECK(message.find(path.string() + " changed since it was opened (replaced by another file)") != std::string::npos);
        CHECK(io::SafetensorsReader(path).fingerprint() != before);  // the first value lies in a sampled slice
    }
    {
        // Truncated in place.
        const io::SafetensorsReader r(path);
        fs::resize_file(path, fs::file_size(path) - 100);
        const std::string message = test::error_message([&] { r.read_matrix<double>("t"); });
        CHECK(message.find("changed since it was opened (its size went from") != std::string::npos);
    }
    {
        // Rewritten in place, same size: the modification time tells (set ahead, as a later write would).
        write(3);
        const io::SafetensorsReader r(path);
        {
            std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
            f.seekp(-4, std::ios::end);
            f.write("\0\0\0\0", 4);
        }
        fs::last_write_time(path, fs::last_write_time(path) + std::chrono::seconds(1));
        const std::string message = test::error_message([&] { r.read_matrix<float>("t"); });
        CHECK(message.find("changed since it was opened (rewritten: its modification time changed)") != std::string::npos);
    }
    fs::remove(path);
}

TEST_CASE_TEMPLATE("covariance files round-trip bit-exactly, and keep accumulating", T, float, double) {
    for (Normalisation norm : {Normalisation::plain, Normalisation::reference}) {
        Covariance<CpuBackend, T> cov(cpu, 11, norm, "nq-open:seed233", 200.5);
        cov.add(test::gaussian<float>(11, 37, 1));
        cov.add(test::gaussian<float>(11, 5, 2));
        const fs::path path = temp_path(std::string("cov-") + std::string(scalar_name<T>()) + ".safetensors");
        io::save_covariance(cov, path);
        auto loaded = io::load_covariance<T>(cpu, path);
        CHECK(loaded.info() == cov.info());
        CHECK(loaded.matrix() == cov.matrix());  // bit-exact
        Mat<T> lower = loaded.raw_sum_lower().template triangularView<Eigen::Lower>();
        Mat<T> lower_ref = cov.raw_sum_lower().template triangularView<Eigen::Lower>();
        CHECK(lower == lower_ref);
        // Keeps accumulating like the original.
        Mat<float> more = test::gaussian<float>(11, 9, 3);
        loaded.add(more);
        cov.add(more);
        CHECK(loaded.matrix() == cov.matrix());
        // The file is a plain safetensors file with the full symmetric matrix.
        io::SafetensorsReader reader(path);
        HostMatrix<T> stored = reader.read_matrix<T>("covariance");
        CHECK(stored(2, 7) == stored(7, 2));
        CHECK(reader.metadata().at("normalisation") == normalisation_name(norm));
    }
}

TEST_CASE("covariance files: wrong type, wrong format, inconsistent metadata are errors") {
    Covariance<CpuBackend, double> cov(cpu, 4);
    cov.add(test::gaussian<double>(4, 10, 1));
    const fs::path path = temp_path("cov-f64.safetensors");
    io::save_covariance(cov, path);
    CHECK(test::error_message([&] { io::load_covariance<float>(cpu, path); }).find("accumulates in f64") != std::string::npos);

    auto write_with = [&](const std::string& name, auto&& edit) {
        io::SafetensorsWriter w;
        HostMatrix<double> c(4, 4, 1.0);
        w.add("covariance", c);
        std::map<std::string, std::string> meta = {{"format", io::covariance_format}, {"dim", "4"}, {"tokens", "10"},
                                                   {"samples", "1"}, {"normalisation", "plain"},
                                                   {"reference_divisor", "256"}, {"accumulation", "f64"},
                                                   {"data_id", ""}};
        edit(meta, w);
        for (auto& [k, v] : meta) w.set_metadata(k, v);
        const fs::path p = temp_path(name);
        w.write(p);
        return test::error_message([&] { io::load_covariance<double>(cpu, p); });
    };
    CHECK(write_with("ok.safetensors", [](auto&, auto&) {}).empty());  // no 'products': an older file, fp64
    CHECK(write_with("products.safetensors", [](auto& m, auto&) { m["products"] = "fp16"; })
              .find("metadata 'products' = 'fp16'") != std::string::npos);
    // 'products' round-trips: a file of float-panel sums loads as one, and
    // its null space takes float's tolerance.
    Covariance<CpuBackend, double> panels(cpu, 4);
    panels.set_accumulation(Accumulation::fp32_panels);
    panels.add(test::gaussian<float>(4, 10, 2));
    const fs::path panels_path = temp_path("cov-panels.safetensors");
    io::save_covariance(panels, panels_path);
    CHECK(io::SafetensorsReader(panels_path).metadata().at("products") == "fp32-panels");
    const auto loaded_panels = io::load_covariance<double>(cpu, panels_path);
    CHECK(loaded_panels.accumulation() == Accumulation::fp32_panels);
    CHECK(loaded_panels.epsilon() == double(std::numeric_limits<float>::epsilon()));
    CHECK(io::load_covariance<double>(cpu, path).accumulation() == Accumulation::fp64);
    CHECK(write_with("fmt.safetensors", [](auto& m, auto&) { m["format"] = "other"; }).find("format is 'other'") !=
          std::string::npos);
    CHECK(write_with("nodim.safetensors", [](auto& m, auto&) { m.erase("dim"); }).find("'dim' is missing") !=
          std::string::npos);
    CHECK(write_with("dim.safetensors", [](auto& m, auto&) { m["dim"] = "5"; }).find("shape [5, 5]") !=
          std::string::npos);
    CHECK(write_with("tok.safetensors", [](auto& m, auto&) { m["tokens"] = "ten"; }).find("not a non-negative integer") !=
          std::string::npos);
    CHECK(write_with("samples.safetensors", [](auto& m, auto&) { m["samples"] = "11"; }).find("inconsistent counts") !=
          std::string::npos);
    CHECK(write_with("norm.safetensors", [](auto& m, auto&) { m["normalisation"] = "max"; }).find("unknown normalisation") !=
          std::string::npos);
    CHECK(write_with("nan.safetensors", [](auto&, auto& w) {
              HostMatrix<double> bad(1, 1, std::numeric_limits<double>::quiet_NaN());
              w.add("extra", bad);
          }).empty());  // unrelated tensors are ignored
    // Truncated file: cut the valid one in half.
    const auto size = fs::file_size(path);
    fs::resize_file(path, size / 2);
    CHECK_FALSE(test::error_message([&] { io::load_covariance<double>(cpu, path); }).empty());
}

// --- the streaming writer and atomic publication ------------------------------

namespace {

/// Peak resident memory of this process so far (VmHWM), bytes.
long long peak_resident_bytes() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
    return -1;
}

}  // namespace

TEST_CASE("write_safetensors: streamed tensors read back exactly, in order, with metadata") {
    const fs::path path = temp_path("streamed.safetensors");
    const Mat<double> a = test::gaussian<double>(5, 7, 1), b = test::gaussian<double>(3, 2, 2);
    const HostMatrix<double> ha = cpu.download(a), hb = cpu.download(b);
    std::vector<io::StreamedTensor> tensors;
    tensors.push_back({"a", io::Dtype::F64, {5, 7}, [&](std::ostream& out) { io::encode_row_major(ha, io::Dtype::F64, out); }});
    tensors.push_back({"b.bf16", io::Dtype::BF16, {3, 2}, [&](std::ostream& out) { io::encode_row_major(hb, io::Dtype::BF16, out); }});
    io::write_safetensors(path, {{"format", "pt"}, {"note", "streamed"}}, tensors);
    CHECK(!fs::exists(path.string() + ".tmp"));
    const io::SafetensorsReader r(path);
    CHECK(r.metadata().at("note") == "streamed");
    CHECK(r.info("a").begin == 0);
    CHECK(r.info("b.bf16").begin == 5 * 7 * 8);  // data in the order given
    CHECK(cpu.upload(r.read_matrix<double>("a")) == a);
    const HostMatrix<double> back = r.read_matrix<double>("b.bf16");
    for (Index i = 0; i < 3; ++i)
        for (Index j = 0; j < 2; ++j) CHECK(back(i, j) == double(io::bf16_to_float(io::float_to_bf16(float(hb(i, j))))));

    // The in-memory writer goes through the same path: identical bytes.
    io::SafetensorsWriter w;
    w.add("a", ha, io::Dtype::F64);
    w.add("b.bf16", hb, io::Dtype::BF16);
    w.set_metadata("format", "pt");
    w.set_metadata("note", "streamed");
    const fs::path copy = temp_path("collected.safetensors");
    w.write(copy);
    std::ifstream x(path, std::ios::binary), y(copy, std::ios::binary);
    CHECK(std::string(std::istreambuf_iterator<char>(x), {}) == std::string(std::istreambuf_iterator<char>(y), {}));

    // copy_tensor streams a tensor's bytes verbatim into another file.
    const fs::path copied = temp_path("copied.safetensors");
    io::write_safetensors(copied, {}, {{"a", io::Dtype::F64, {5, 7}, [&](std::ostream& out) { r.copy_tensor("a", out); }}});
    CHECK(cpu.upload(io::SafetensorsReader(copied).read_matrix<double>("a")) == a);
}

TEST_CASE("write_safetensors: a writer that lies about its size, or throws, publishes nothing and keeps the old file") {
    const fs::path path = temp_path("lying.safetensors");
    io::write_text_atomically(path, "the old content");
    const std::string short_write = test::error_message([&] {
        io::write_safetensors(path, {}, {{"t", io::Dtype::F32, {2, 2}, [](std::ostream& out) { out.write("abcd", 4); }}});
    });
    CHECK(short_write.find("tensor 't'") != std::string::npos);
    CHECK(short_write.find("produced 4 bytes, the header promises 16") != std::string::npos);
    const std::string thrown = test::error_message([&] {
        io::write_safetensors(path, {}, {{"t", io::Dtype::F32, {1, 1}, [](std::ostream&) { loranull::fail("test", "boom"); }}});
    });
    CHECK(thrown.find("boom") != std::string::npos);
    std::ifstream in(path);
    CHECK(std::string(std::istreambuf_iterator<char>(in), {}) == "the old content");
    CHECK(!fs::exists(path.string() + ".tmp"));
    CHECK(test::error_message([&] {
              io::write_safetensors(path, {}, {{"t", io::Dtype::F32, {1, 1}, [](std::ostream& o) { o.write("abcd", 4); }},
                                               {"t", io::Dtype::F32, {1, 1}, [](std::ostream& o) { o.write("abcd", 4); }}});
          }).find("tensor 't' added twice") != std::string::npos);
}

TEST_CASE("write_safetensors: memory stays bounded by one tensor while a file of many is written") {
    // 12 tensors of 16 MiB (F32 2048 x 2048), each built by its callback and
    // freed after it: the peak must grow by about one tensor (its double
    // HostMatrix, 32 MiB, plus a row buffer), far below the 192 MiB written.
    // ctest runs this case in its own process, so the peak before is small.
    const Index n = 2048;
    const long long before = peak_resident_bytes();
    REQUIRE(before > 0);
    std::vector<io::StreamedTensor> tensors;
    for (int k = 0; k < 12; ++k)
        tensors.push_back({"t" + std::to_string(k), io::Dtype::F32, {n, n}, [k, n](std::ostream& out) {
                               HostMatrix<double> m(n, n, double(k));
                               io::encode_row_major(m, io::Dtype::F32, out);
                           }});
    const fs::path path = temp_path("big.safetensors");
    io::write_safetensors(path, {}, tensors);
    const long long growth = peak_resident_bytes() - before;
    const long long one_tensor = n * n * 8, written = 12 * n * n * 4;
    MESSAGE("peak grew by ", growth / (1 << 20), " MiB while writing ", written / (1 << 20), " MiB");
#if defined(__SANITIZE_ADDRESS__)
    MESSAGE("the peak is not checked under AddressSanitizer: its quarantine keeps freed tensors resident");
#else
    CHECK(growth < 2 * one_tensor);
#endif
    const io::SafetensorsReader r(path);
    CHECK(r.info("t11").end - r.info("t11").begin == std::uint64_t(n * n * 4));
    CHECK(r.read_matrix<float>("t7")(n - 1, n - 1) == 7.0f);
    fs::remove(path);
}

TEST_CASE("encode_row_major rounds double to BF16 and F16 once: values just above a tie round up") {
    // 1 + 2^-8 + 2^-30 lies just above the BF16 midpoint of 1 and 1 + 2^-7; through
    // float it would lose the 2^-30, land on the tie and round to even (1).
    HostMatrix<double> m(1, 4);
    m(0, 0) = 1 + std::ldexp(1.0, -8) + std::ldexp(1.0, -30);
    m(0, 1) = -(1 + std::ldexp(1.0, -8) + std::ldexp(1.0, -30));
    m(0, 2) = 1 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40);  // the F16 tie of 1 and 1 + 2^-10, and a bit
    m(0, 3) = 1 + std::ldexp(1.0, -8);                           // an exact tie: to even (1)
    for (io::Dtype dtype : {io::Dtype::BF16, io::Dtype::F16}) {
        const fs::path path = temp_path("ties.safetensors");
        io::SafetensorsWriter w;
        w.add("m", m, dtype);
        w.write(path);
        const HostMatrix<double> back = io::SafetensorsReader(path).read_matrix<double>("m");
        if (dtype == io::Dtype::BF16) {
            CHECK(back(0, 0) == 1 + std::ldexp(1.0, -7));
            CHECK(back(0, 1) == -(1 + std::ldexp(1.0, -7)));
            CHECK(back(0, 3) == 1.0);
        } else {
            CHECK(back(0, 2) == 1 + std::ldexp(1.0, -10));
            CHECK(back(0, 3) == 1 + std::ldexp(1.0, -8));  // exact in F16
        }
    }
}
