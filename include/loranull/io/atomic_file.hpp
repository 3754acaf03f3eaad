#pragma once
// Files published whole or not at all: the one way loranull writes a file.
//
//   1. the content goes to PATH.tmp (same folder, so the rename below is atomic),
//   2. the stream is flushed and the file fsync'ed (its bytes are on disk),
//   3. PATH.tmp is renamed over PATH, and the folder is fsync'ed (the rename
//      itself survives a power cut).
//
// A reader therefore sees the old file or the complete new one, never half of
// one, and a crash at any moment leaves at most a stray PATH.tmp that the next
// write replaces (an error while writing removes it). Everything that publishes a result (safetensors files, JSON
// configs and reports, CSV tables) goes through write_file_atomically.

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <system_error>

#include "loranull/core/error.hpp"

namespace loranull::io {

namespace detail {

/// fsync of an existing file or folder (opened read-only: Linux syncs the
/// inode whatever the descriptor's mode). Folders that cannot be opened
/// (some file systems) are skipped: the rename is still atomic there.
inline void sync_path(const std::filesystem::path& path, bool is_folder, const char* where) {
    const int fd = ::open(path.c_str(), O_RDONLY | (is_folder ? O_DIRECTORY : 0));
    if (fd < 0) {
        require(is_folder, where, "cannot open ", path.string(), " to sync it");
        return;
    }
    const int status = ::fsync(fd);
    ::close(fd);
    require(status == 0 || is_folder, where, "fsync of ", path.string(), " failed");
}

/// What a failed write says of errno (captured right after the failure).
inline std::string write_error_text(int error) {
    return (error != 0 ? std::generic_category().message(error) : std::string("unknown error")) + "; disk full?";
}

}  // namespace detail

/// Writes PATH through `write` (which streams the content into the std::ostream
/// it is given) to PATH.tmp, syncs it and renames it to PATH.
inline void write_file_atomically(const std::filesystem::path& path, const std::function<void(std::ostream&)>& write) {
    const char* where = "io::write_file_atomically";
    const std::filesystem::path tmp = path.string() + ".tmp";
    try {
        {
            std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
            require(bool(out), where, "cannot create ", tmp.string());
            errno = 0;
            write(out);
            out.close();  // flushes: a failed last write shows here
            const int error = errno;
            require(!out.fail(), where, "cannot write ", path.string(), " (writing ", tmp.string(), " failed: ",
                    detail::write_error_text(error), ")");
        }
        detail::sync_path(tmp, false, where);
        std::error_code ec;
        std::filesystem::rename(tmp, path, ec);
        require(!ec, where, "cannot rename ", tmp.string(), " to ", path.string(), ": ", ec.message());
    } catch (...) {
        std::error_code ec;  // PATH is untouched; the partial PATH.tmp goes
        std::filesystem::remove(tmp, ec);
        throw;
    }
    const std::filesystem::path folder = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
    detail::sync_path(folder, true, where);
}

/// The same for a text held in memory (JSON, CSV).
inline void write_text_atomically(const std::filesystem::path& path, const std::string& text) {
    write_file_atomically(path, [&](std::ostream& out) { out << text; });
}

}  // namespace loranull::io
