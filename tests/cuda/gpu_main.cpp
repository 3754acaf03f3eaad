// doctest main of the GPU test executables. Before running it says which device
// the tests run on, or, without one, "no CUDA device: N GPU tests skipped"
// (ctest turns that line into a "skipped" result: SKIP_REGULAR_EXPRESSION in
// tests/cuda/CMakeLists.txt).
//
// Listing (--list-test-cases, which doctest_discover_tests parses line by
// line) prints nothing extra and lists the skipped cases too (doctest's
// no-skip option): otherwise ctest would never learn of the GPU tests on a
// machine without a GPU, and they would vanish instead of showing as skipped.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <string_view>

#include "gpu_test.hpp"

namespace {

/// Remembers how many test cases the run selected: on a machine with a GPU, a
/// run that selects none (a filter that matches nothing, e.g. a test name
/// ctest mangled) fails instead of passing with nothing tested.
struct RunCounter : doctest::IReporter {
    static inline bool ended = false;
    static inline unsigned selected = 0;

    explicit RunCounter(const doctest::ContextOptions&) {}
    void report_query(const doctest::QueryData&) override {}
    void test_run_start() override {}
    void test_run_end(const doctest::TestRunStats& stats) override {
        ended = true;
        selected = stats.numTestCasesPassingFilters;
    }
    void test_case_start(const doctest::TestCaseData&) override {}
    void test_case_reenter(const doctest::TestCaseData&) override {}
    void test_case_end(const doctest::CurrentTestCaseStats&) override {}
    void test_case_exception(const doctest::TestCaseException&) override {}
    void subcase_start(const doctest::SubcaseSignature&) override {}
    void subcase_end() override {}
    void log_assert(const doctest::AssertData&) override {}
    void log_message(const doctest::MessageData&) override {}
    void test_case_skipped(const doctest::TestCaseData&) override {}
};

bool is_listing_option(std::string_view arg) {
    while (!arg.empty() && arg.front() == '-') arg.remove_prefix(1);
    if (arg.substr(0, 3) == "dt-") arg.remove_prefix(3);
    arg = arg.substr(0, arg.find('='));
    for (std::string_view option : {"list-test-cases", "ltc", "list-test-suites", "lts", "list-reporters", "lr",
                                    "count", "c", "help", "h", "?", "version", "v"})
        if (arg == option) return true;
    return false;
}

}  // namespace

DOCTEST_REGISTER_LISTENER("gpu_run_counter", 1, RunCounter);

int main(int argc, char** argv) {
    bool listing = false;
    for (int i = 1; i < argc; ++i) listing = listing || is_listing_option(argv[i]);
    if (!listing) {
        if (gpu_test::no_device())
            std::printf("no CUDA device: %d GPU tests skipped\n", gpu_test::registered());
        else
            std::printf("CUDA device: %s\n", parity::device_description().c_str());
        std::fflush(stdout);
    }
    doctest::Context context(argc, argv);
    if (listing) context.setOption("no-skip", true);
    const int result = context.run();
    if (result == 0 && !listing && !gpu_test::no_device() && RunCounter::ended && RunCounter::selected == 0) {
        std::printf("error: a CUDA device is present but no test case matched the filters: nothing was tested\n");
        return 1;
    }
    return result;
}
