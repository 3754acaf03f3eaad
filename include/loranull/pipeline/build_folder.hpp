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
// atomically (io/atomic_file.hpp), so a block file that exists is complete.

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

#include <nlohmann/json.hpp>

#include "loranull/io/atomic_file.hpp"
#include "loranull/io/safetensors.hpp"
#include "loranull/pipeline/build_options.hpp"

namespace loranull::pipeline {

inline constexpr const char* settings_format = "loranull.build/1";
inline constexpr const char* block_format = "loranull.build.block/1";

class BuildFolder {
public:
    explicit BuildFolder(std::string out) : out_(std::move(out)) {}

    /// Creates OUT or checks that it resumes a run of exactly `settings`.
    /// Returns true when that run is already finished (report.json exists).
    bool prepare(const nlohmann::json& settings) {
        namespace fs = std::filesystem;
        const fs::path out = out_;
        std::error_code ec;
        settings_hash_ = text_hash(settings.dump());
        if (fs::exists(out) && !fs::is_directory(out)) refuse_input("--out ", out_, " exists and is not a folder");
        if (!fs::exists(out) || fs::is_empty(out, ec)) {
            // build.json first: a folder interrupted after it resumes, one
            // interrupted before it is still empty.
            fs::create_directories(out, ec);
            if (ec) refuse_input("cannot create ", out.string(), ": ", ec.message());
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

    std::filesystem::path path() const { return out_; }
    std::filesystem::path block_path(Index layer) const {
        char name[64];
        std::snprintf(name, sizeof name, "block-%05td.safetensors", layer);
        return std::filesystem::path(out_) / "blocks" / name;
    }
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

    /// Removes OUT/blocks/ once the outputs are assembled.
    void remove_blocks() const {
        std::error_code ec;
        std::filesystem::remove_all(std::filesystem::path(out_) / "blocks", ec);
    }

private:
    std::string out_;
    std::string settings_hash_;
};

}  // namespace loranull::pipeline
