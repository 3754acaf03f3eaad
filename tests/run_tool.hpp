#pragma once
// Running a tool binary as a user runs it, for the tests of the tools and the
// experiment: a scratch folder per test process, the command through the
// shell, its exit status, stdout and stderr captured.

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>

namespace test {

/// A folder of this process only (ctest runs the test cases in parallel, each
/// in its own process), removed at exit. `name` tells the suites apart.
inline const std::filesystem::path& scratch_dir(const std::string& name) {
    struct Scratch {
        std::filesystem::path path;
        explicit Scratch(const std::string& n)
            : path(std::filesystem::temp_directory_path() / ("loranull_" + n + "_" + std::to_string(::getpid()))) {
            std::filesystem::remove_all(path);
            std::filesystem::create_directories(path);
        }
        ~Scratch() {
            std::error_code ec;
            std::filesystem::remove_all(path, ec);
        }
    };
    static const Scratch scratch(name);
    return scratch.path;
}

/// A file's bytes.
inline std::string slurp(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

/// p in single quotes, for a shell command line. (Appended piece by piece:
/// GCC 12 warns, wrongly, with -Wrestrict on "'" + string + "'".)
inline std::string q(const std::filesystem::path& p) {
    std::string quoted(1, '\'');
    quoted += p.string();
    quoted += '\'';
    return quoted;
}

struct ToolResult {
    int status = -1;  // exit status; -1: killed by a signal
    std::string out, err;
};

/// `binary args` (args already quoted where needed), stdout and stderr
/// captured through files in `scratch`.
inline ToolResult run_tool(const std::string& binary, const std::string& args, const std::filesystem::path& scratch) {
    const std::filesystem::path out = scratch / "stdout.txt", err = scratch / "stderr.txt";
    const std::string command = q(binary) + " " + args + " >" + q(out) + " 2>" + q(err);
    const int raw = std::system(command.c_str());
    ToolResult r;
    r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    r.out = slurp(out);
    r.err = slurp(err);
    return r;
}

#ifdef LORANULL_MPIEXEC
/// `mpirun -np K <program> <args>` as CI runs it (oversubscribed on 2 cores,
/// allowed as root, no single-copy shared memory in containers, one thread a
/// rank), bounded: a hang fails the test instead of stalling the suite.
inline ToolResult mpirun(int ranks, const std::string& program, const std::string& args,
                         const std::filesystem::path& scratch) {
    for (const auto& [name, value] : {std::pair<const char*, const char*>{"OMPI_ALLOW_RUN_AS_ROOT", "1"},
                                      {"OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"},
                                      {"OMPI_MCA_btl_vader_single_copy_mechanism", "none"},
                                      {"OMPI_MCA_rmaps_base_oversubscribe", "1"},
                                      {"OMP_NUM_THREADS", "1"}})
        ::setenv(name, value, 1);
    return run_tool("timeout", "100 " + q(LORANULL_MPIEXEC) + " -np " + std::to_string(ranks) +
                                   " --oversubscribe --bind-to none " + q(program) + " " + args,
                    scratch);
}
#endif

/// Lines of s that are not empty.
inline int line_count(const std::string& s) {
    int n = 0;
    std::stringstream in(s);
    std::string line;
    while (std::getline(in, line)) n += !line.empty();
    return n;
}

}  // namespace test
