#pragma once
// loranull-build's report on stdout: per layer and module the reconstruction
// error and (with calibration) SPEC.md section 4's energy, bound and tight
// bound; the five worst-kept modules; the time per stage and the peak memory.
// The same numbers are in OUT/report.json (pipeline/build_settings.hpp).

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace loranull::tools::build {

inline void print_report(const nlohmann::json& report, bool has_data) {
    struct Row {
        long long layer;
        std::string module;
        double bound;
    };
    std::vector<Row> rows;
    if (has_data)
        std::printf("%-5s %-16s %-11s %-11s %-11s %s\n", "layer", "module", "energy", "bound", "tight", "reconstruction");
    else
        std::printf("%-5s %-16s %s\n", "layer", "module", "reconstruction");
    for (const auto& layer : report["layers"]) {
        const long long l = layer["layer"];
        for (const auto& m : layer["modules"]) {
            const std::string module = m["module"];
            if (has_data) {
                std::printf("%-5lld %-16s %-11.3e %-11.3e %-11.3e %.1e\n", l, module.c_str(), double(m["energy"]),
                            double(m["bound"]), double(m["tight"]), double(m["reconstruction"]));
                rows.push_back({l, module, m["bound"]});
            } else {
                std::printf("%-5lld %-16s %.1e\n", l, module.c_str(), double(m["reconstruction"]));
            }
        }
    }
    if (!rows.empty()) {
        std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.bound > b.bound; });
        std::printf("knowledge kept worst (largest bound first):");
        for (std::size_t i = 0; i < std::min<std::size_t>(5, rows.size()); ++i)
            std::printf("%s layer %lld %s (%.2e)", i ? "," : "", rows[i].layer, rows[i].module.c_str(), rows[i].bound);
        std::printf("\n");
    }
    const auto& t = report["seconds"];
    std::printf("time %.2f s: load %.2f, embedding %.2f, forward %.2f, covariance %.2f, reduction %.2f, "
                "decomposition %.2f (null spaces %.2f, report %.2f), block writes %.2f, assembly %.2f%s\n",
                double(t["total"]), double(t["load"]), double(t["embedding"]), double(t["forward"]),
                double(t["covariance"]), double(t["reduction"]), double(t["decomposition"]),
                double(t["decomposition_null_spaces"]), double(t["decomposition_report"]), double(t["block_writes"]),
                double(t["assembly"]), int(report["ranks"]) > 1 ? " (rank 0's)" : "");
    if (int(report["ranks"]) > 1) {
        const auto& a = report["seconds_all_ranks"];
        std::printf("%d ranks, summed: forward %.2f, covariance %.2f, reduction %.2f, decomposition %.2f\n",
                    int(report["ranks"]), double(a["forward"]), double(a["covariance"]), double(a["reduction"]),
                    double(a["decomposition"]));
    }
    std::printf("peak memory (VmHWM): %.1f MiB\n", double(report["peak_memory_bytes"]) / (1024.0 * 1024.0));
    if (report.contains("peak_device_memory_bytes"))
        std::printf("peak device memory (stream-ordered pool): %.1f MiB\n",
                    double(report["peak_device_memory_bytes"]) / (1024.0 * 1024.0));
}

}  // namespace loranull::tools::build
