#pragma once
// The output folder of a build, and how a build resumes.
//
//   OUT/build.json                      the settings (written first)
//   OUT/blocks/block-NNNNN.safetensors  one per adapted block: its residual
//                                       weights and adapter factors, metadata
//                                       {format, settings hash, layer, report}
//   OUT/model/, OUT/adapter/            assembled from the block files (build_assembly.hpp)
//   OUT/covariances/                    --save-covariances
//   OUT/report.json                     written last: the run is finished
//
// A folder is new (absent or empty), or holds a run of the same settings: then
// the block files already written are skipped. Every file is published
// atomically (io/atomic_file.hpp), so a block file that exists is complete,
// and one run at a time holds OUT (an flock on the folder).

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "loranull/io/atomic_file.hpp"
#include "loranull/io/safetensors.hpp"
#include "loranull/parallel/communicator.hpp"
#include "loranull/pipeline/build_options.hpp"

namespace loranull::pipeline {

inline constexpr const char* settings_format = "loranull.build/1";
inline constexpr const char* block_format = "loranull.build.block/1";

/// What computing one block produces: files relative to OUT, in the order
/// they are published (the block file last, so that its existence means the
/// block is done), and the warnings met on the way. Made by the rank that
/// decomposed the block; rank 0 publishes it (pack() carries it over).
struct BlockOutput {
    std::vector<std::pair<std::string, std::string>> files;  // relative path, bytes
    std::vector<std::string> warnings;

    /// [files, path, bytes, ..., warnings...] framed by parallel::pack.
    std::string pack() const {
        std::vector<std::string> parts{std::to_string(files.size())};
        for (const auto& [path, bytes] : files) {
            parts.push_back(path);
            parts.push_back(bytes);
        }
        parts.insert(parts.end(), warnings.begin(), warnings.end());
        return parallel::pack(parts);
    }
    static BlockOutput unpack(const std::string& packed) {
        const std::vector<std::string> parts = parallel::unpack(packed);
        const std::size_t files = parts.empty() ? 0 : std::stoul(parts[0]);
        require(!parts.empty() && parts.size() >= 1 + 2 * files, "pipeline::BlockOutput::unpack",
                "a message of ", parts.size(), " parts cannot hold ", files, " files");
        BlockOutput out;
        for (std::size_t k = 0; k < files; ++k) out.files.emplace_back(parts[1 + 2 * k], parts[2 + 2 * k]);
        out.warnings.assign(parts.begin() + static_cast<std::ptrdiff_t>(1 + 2 * files), parts.end());
        return out;
    }
};

class BuildFolder {
public:
    explicit BuildFolder(std::string out) : out_(std::move(out)) {}

    /// Creates OUT or checks that it resumes a run of exactly `settings`.
    /// Returns true when that run is already finished (report.json exists).
    bool prepare(const nlohmann::json& settings) {
        namespace fs = std::filesystem;
        const fs::path out = out_;
        std::error_code ec;
        expect(settings);
        if (fs::exists(out) && !fs::is_directory(out)) refuse_input("--out ", out_, " exists and is not a folder");
        fs::create_directories(out, ec);
        if (ec) refuse_input("cannot create ", out.string(), ": ", ec.message());
        lock();
        // A run killed while writing build.json leaves build.json.tmp alone: still a new folder.
        if (!fs::exists(out / "build.json") && fs::exists(out / "build.json.tmp")) fs::remove(out / "build.json.tmp", ec);
        if (fs::is_empty(out, ec)) {
            // build.json first: a folder interrupted after it resumes, one
            // interrupted before it is new (empty, or build.json.tmp alone).
            io::write_text_atomically(out / "build.json", settings.dump(2) + "\n");
            fs::create_directories(out / "blocks", ec);
            if (ec) refuse_input("cannot create ", (out / "blocks").string(), ": ", ec.message());
            return false;
        }
        const fs::path build = out / "build.json";
        if (!fs::exists(build))
            refuse_input("--out ", out_, " is not empty and not a loranull-build run (no build.json): use an empty folder");
        nlohmann::json previous;
        try {
            std::ifstream in(build);
            previous = nlohmann::json::parse(in);
        } catch (const nlohmann::json::exception& e) {
            refuse_input("--out ", out_, ": build.json is not valid JSON (", e.what(), ")");
        }
        std::string differences;
        for (const auto& [key, value] : settings.items())
            if (!previous.contains(key) || previous[key] != value)
                differences += (differences.empty() ? "" : ", ") + key + " " +
                               (previous.contains(key) ? previous[key].dump() : "missing") + " -> " + value.dump();
        if (!differences.empty())
            refuse_input("--out ", out_, " holds a run with other settings (", differences,
                         "): it cannot be resumed; use another folder or delete it");
        if (fs::exists(out / "report.json")) return true;
        fs::create_directories(out / "blocks", ec);
        return false;
    }

    /// The settings of this run, without touching OUT: what the ranks other
    /// than 0 (which never write) need to label the block files they make.
    void expect(const nlohmann::json& settings) { settings_hash_ = text_hash(settings.dump()); }

    std::filesystem::path path() const { return out_; }
    /// "blocks/block-NNNNN.safetensors", relative to OUT.
    static std::string block_name(Index layer) {
        char name[64];
        std::snprintf(name, sizeof name, "blocks/block-%05td.safetensors", layer);
        return name;
    }
    std::filesystem::path block_path(Index layer) const { return std::filesystem::path(out_) / block_name(layer); }
    const std::string& settings_hash() const { return settings_hash_; }

    /// Whether block `layer` was written by a run of these settings; a block
    /// file of other settings is refused (it would mix two builds).
    bool block_done(Index layer) const {
        const std::filesystem::path path = block_path(layer);
        if (!std::filesystem::exists(path)) return false;
        const io::SafetensorsReader block(path);  // a corrupt file throws, naming it
        const auto& meta = block.metadata();
        auto get = [&](const char* key) { return meta.count(key) ? meta.at(key) : std::string(); };
        if (get("format") != block_format || get("settings") != settings_hash_ || get("layer") != std::to_string(layer))
            refuse_input(path.string(), " was not written by this run's settings (settings ", get("settings"),
                         ", expected ", settings_hash_, "): delete it to recompute the block");
        return true;
    }

    /// Writes a block's files under OUT, each atomically, in their order.
    void publish(const BlockOutput& output) const {
        for (const auto& [name, bytes] : output.files) {
            const std::filesystem::path path = std::filesystem::path(out_) / name;
            std::error_code ec;
            std::filesystem::create_directories(path.parent_path(), ec);
            if (ec) refuse_input("cannot create ", path.parent_path().string(), ": ", ec.message());
            io::write_file_atomically(path, [&](std::ostream& out) {
                out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
            });
        }
    }

    /// Removes OUT/blocks/ once the outputs are assembled.
    void remove_blocks() const {
        std::error_code ec;
        std::filesystem::remove_all(std::filesystem::path(out_) / "blocks", ec);
    }

    BuildFolder(const BuildFolder&) = delete;
    BuildFolder& operator=(const BuildFolder&) = delete;
    ~BuildFolder() {
        if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the lock
    }

private:
    /// An exclusive flock on the folder itself, held until the builder is
    /// done (the kernel drops it if the process dies): a second run on the
    /// same OUT is refused instead of interleaving its files with this one's.
    void lock() {
        lock_fd_ = ::open(out_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (lock_fd_ < 0) refuse_input("--out ", out_, ": cannot open the folder to lock it");
        if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0)
            refuse_input("--out ", out_, " is in use by another loranull-build run (its lock is held): wait for it "
                                         "to finish, or write to another folder");
    }

    std::string out_;
    std::string settings_hash_;
    int lock_fd_ = -1;
};

}  // namespace loranull::pipeline
