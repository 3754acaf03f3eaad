// The knowledge-retention experiment (examples/experiment), reduced to a tiny
// model and a few steps: its building blocks, the whole pipeline run as a user
// runs it (loranull-pretrain, then loranull-experiment), the invariants that
// must hold at any scale, the outputs, and every bad input.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include <loranull/backend/cpu/cpu_backend.hpp>

#include "run_tool.hpp"
#include "corpus.hpp"
#include "equal_task.hpp"
#include "evaluate.hpp"
#include "rates.hpp"
#include "report.hpp"

#ifndef LORANULL_PRETRAIN_PATH
#error "LORANULL_PRETRAIN_PATH and LORANULL_EXPERIMENT_PATH must be defined by the build"
#endif

using namespace loranull;
using namespace experiment;
namespace fs = std::filesystem;

namespace {

/// A scratch folder for this process, removed at exit.
const fs::path& work_dir() { return test::scratch_dir("test_experiment"); }

using test::slurp;
using Result = test::ToolResult;

Result run(const std::string& binary, const std::string& args) { return test::run_tool(binary, args, work_dir()); }

/// A tiny pre-trained model (seconds of training), made once for the suite.
const fs::path& tiny_model() {
    static const fs::path dir = [] {
        const fs::path d = work_dir() / "tiny-model";
        const Result r = run(LORANULL_PRETRAIN_PATH, "--out '" + d.string() +
                                                         "' --steps 60 --dim 32 --layers 2 --heads 2 --kv-heads 1 "
                                                         "--hidden 64 --entities 12 --seq-len 64 --batch 8 --quiet");
        INFO(r.out << r.err);
        REQUIRE(r.status == 0);
        return d;
    }();
    return dir;
}

/// PNG: the 8-byte signature, then an IHDR chunk with a positive size.
void check_png(const fs::path& path) {
    INFO(path.string());
    const std::string bytes = slurp(path);
    REQUIRE(bytes.size() > 33);
    CHECK(bytes.substr(0, 8) == std::string("\x89PNG\r\n\x1a\n", 8));
    CHECK(bytes.substr(12, 4) == "IHDR");
    auto be32 = [&](std::size_t at) {
        std::uint32_t v = 0;
        for (std::size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(bytes[at + i]);
        return v;
    };
    CHECK(be32(16) > 100);  // width
    CHECK(be32(20) > 100);  // height
    CHECK(bytes.substr(bytes.size() - 8, 4) == "IEND");
}

/// CSV: a header and `rows` rows, every row with the header's field count.
void check_csv(const fs::path& path, std::size_t rows) {
    INFO(path.string());
    std::ifstream in(path);
    std::string line;
    REQUIRE(std::getline(in, line));
    const auto fields = [](const std::string& s) { return std::count(s.begin(), s.end(), ',') + 1; };
    const auto width = fields(line);
    CHECK(width >= 5);
    std::size_t n = 0;
    while (std::getline(in, line)) {
        CHECK(fields(line) == width);
        CHECK(line.find("nan") == std::string::npos);
        ++n;
    }
    CHECK(n == rows);
}

}  // namespace

TEST_CASE("text cleaning keeps words and drops layout") {
    CHECK(clean_text("a  b\t\tc\n\n\n\nd \xe2\x94\x82 e\r\n") == "a b c\n\nd e\n");
    CHECK(clean_text("   leading") == "leading");
}

TEST_CASE("facts and the addition task are reproducible and disjoint") {
    const auto a = make_facts(7, 50), b = make_facts(7, 50), c = make_facts(8, 50);
    REQUIRE(a.size() == 100);
    CHECK(a[17].sentence() == b[17].sentence());
    CHECK(a[17].sentence() != c[17].sentence());
    std::set<std::string> prompts;
    for (const Fact& f : a) prompts.insert(f.prompt());
    CHECK(prompts.size() == a.size());  // no (entity, attribute) twice: one answer per prompt
    const AdditionTask task = AdditionTask::make(2, 500, 3);
    CHECK(task.held_out.size() == 500);
    CHECK(task.train.size() == 9500);
    std::set<std::pair<int, int>> held;
    for (const Problem& p : task.held_out) held.insert({p.a, p.b});
    for (const Problem& p : task.train) CHECK(held.count({p.a, p.b}) == 0);
    CHECK(Problem{37, 85, 2}.text() == "37+85=122\n");
    CHECK(Problem{7, 5, 2}.text() == "07+05=012\n");
    // Task batches score the answers only.
    Rng rng(4);
    const Batch batch = task_batch(task, 2, 20, rng);
    REQUIRE(batch.tokens.size() == 40);
    for (std::size_t i = 0; i < batch.tokens.size(); ++i) {
        const char next = i + 1 < batch.tokens.size() && (i + 1) % 20 != 0 ? char(batch.tokens[i + 1]) : 0;
        if (next) CHECK((batch.targets[i] == ignore_target || batch.targets[i] == next));
        if (batch.tokens[i] == '=') CHECK(batch.targets[i] != ignore_target);  // the first answer digit is scored
        if (batch.tokens[i] == '+') CHECK(batch.targets[i] == ignore_target);  // an operand digit is not
    }
    CHECK_THROWS_AS(AdditionTask::make(4, 10, 1), loranull::error);
}

TEST_CASE("teacher-forced exact match equals greedy decoding") {
    // The claim of evaluate.hpp, checked against a real greedy decoding loop on
    // a random model (whose answers are mostly wrong: both outcomes occur when
    // the answer is the model's own greedy continuation for half the items).
    CpuBackend cpu;
    LlamaConfig config;
    config.dim = 16;
    config.n_layers = 1;
    config.n_heads = 2;
    config.n_kv_heads = 1;
    config.hidden_dim = 24;
    config.max_seq_len = 32;
    LlamaModel<CpuBackend, float> model(cpu, config);
    model.init_random(5);
    auto greedy = [&](const std::string& prompt, std::size_t length) {
        std::string s = prompt;
        for (std::size_t i = 0; i < length; ++i) {
            const auto logits = cpu.download(model.forward(to_tokens(s), static_cast<Index>(s.size())));
            const Index last = logits.cols() - 1;
            Index best = 0;
            for (Index v = 1; v < logits.rows(); ++v)
                if (logits(v, last) > logits(best, last)) best = v;
            s.push_back(static_cast<char>(best));
        }
        return s.substr(prompt.size());
    };
    std::vector<PromptAnswer> items;
    for (int i = 0; i < 8; ++i) {
        std::string prompt = "x";  // (built in steps: GCC 12 warns falsely on "x" + string + "=")
        prompt += std::to_string(i * 7);
        prompt += '=';
        const std::string decoded = greedy(prompt, 3);
        items.push_back({prompt, i % 2 == 0 ? decoded : std::string("abc")});
    }
    const ExactMatch m = exact_match(model, items, 3);
    for (std::size_t i = 0; i < items.size(); ++i) {
        INFO(i);
        CHECK(m.correct[i] == (greedy(items[i].prompt, 3) == items[i].answer));
    }
    CHECK(m.accuracy >= 0.5);
    CHECK(std::isfinite(m.answer_bits));
}

TEST_CASE("rates: the quarter-decade lattice and each method's frontier") {
    CHECK(lattice_rate(-12) == 1e-3);
    CHECK(lattice_rate(-11) == 1.778e-3);
    CHECK(lattice_rate(-10) == 3.162e-3);
    CHECK(lattice_rate(-1) == 5.623e-1);
    CHECK(lattice_rate(0) == 1.0);
    CHECK(lattice_rate(3) == 5.623);
    CHECK(frontier_rates(experiment::Method::lora, 8, true) == std::vector<double>{1e-3, 1.778e-3, 3.162e-3, 5.623e-3, 1e-2});
    CHECK(centre(experiment::Method::lora, 8) == -10);
    // Rank 32 moves the transition half a decade lower, rank 16 a quarter.
    CHECK(frontier_rates(experiment::Method::lora, 32, true) == std::vector<double>{3.162e-4, 5.623e-4, 1e-3, 1.778e-3, 3.162e-3});
    CHECK(centre(experiment::Method::lora, 16) == -11);
    CHECK(centre(experiment::Method::lora_null_v2, 32) == -8);
    CHECK(centre(experiment::Method::pissa, 8) == -12);
    // The default run: one rate, the grid's half-task point at the grid's ranks, else the centre.
    CHECK(frontier_rates(experiment::Method::lora, 16, false) == std::vector<double>{1.778e-3});
    for (const HalfTaskPoint& p : half_task_points) {
        const Index rank = p.rank ? p.rank : 8;
        INFO(method_name(p.method), " rank ", p.rank);
        // Measured on rates the grid ran: the sweep's five or the extension above them.
        CHECK(p.q >= centre(p.method, rank) - 2);
        CHECK(p.q <= centre(p.method, rank) + 3);
        CHECK(frontier_rates(p.method, rank, false) == std::vector<double>{lattice_rate(p.q)});
    }
    CHECK(frontier_rates(experiment::Method::full, 8, true) == frontier_rates(experiment::Method::full, 64, true));  // no rank
}

TEST_CASE("equal task score: interpolation along a rate curve, by hand") {
    // task 0.1 -> 0.3 -> 0.8 over three rates a decade apart.
    const std::vector<CurvePoint> curve = {{1e-3, 0.1, 0.9, 2.0}, {1e-2, 0.3, 0.7, 2.2}, {1e-1, 0.8, 0.2, 3.0}};
    const auto mid = at_task_level(curve, 0.5);  // 0.4 of the way from the second point to the third
    REQUIRE(mid);
    CHECK(mid->task == 0.5);
    CHECK(mid->facts == doctest::Approx(0.5).epsilon(1e-12));       // 0.7 + 0.4 (0.2 - 0.7)
    CHECK(mid->text_bits == doctest::Approx(2.52).epsilon(1e-12));  // 2.2 + 0.4 (3.0 - 2.2)
    CHECK(mid->lr == doctest::Approx(std::pow(10.0, -1.6)).epsilon(1e-12));
    const auto low = at_task_level(curve, 0.2);  // half-way along the first segment
    REQUIRE(low);
    CHECK(low->facts == doctest::Approx(0.8).epsilon(1e-12));
    CHECK(at_task_level(curve, 0.8)->facts == doctest::Approx(0.2).epsilon(1e-12));  // reached exactly at the last point
    CHECK(!at_task_level(curve, 0.1));   // the lowest rate already learns that much: not extrapolated
    CHECK(!at_task_level(curve, 0.05));
    CHECK(!at_task_level(curve, 0.9));   // never reached
    CHECK(!at_task_level({}, 0.5));
    // Not monotone (a rate too high collapses): the first crossing counts.
    const std::vector<CurvePoint> bumpy = {{1e-3, 0.1, 1.0, 2.0}, {1e-2, 0.6, 0.5, 2.0}, {1e-1, 0.4, 0.0, 2.0}, {1.0, 0.9, 0.0, 2.0}};
    CHECK(at_task_level(bumpy, 0.5)->facts == doctest::Approx(0.6).epsilon(1e-12));  // t = 0.8 on the first segment

    // The table: per seed, then mean and spread over the seeds that reach the level.
    auto result = [](std::uint64_t seed, double lr, double task, double facts, bool diverged = false) {
        RunResult r;
        r.method = experiment::Method::corda;
        r.rank = 8;
        r.seed = seed;
        r.lr = lr;
        r.after = {2.0, facts, task, 1.0};
        r.diverged = diverged;
        return r;
    };
    const std::vector<RunResult> runs = {
        result(1, 1e-2, 0.6, 0.2), result(1, 1e-3, 0.2, 0.8),  // seed 1 at 0.4: t = 0.5, facts 0.5
        result(2, 1e-3, 0.0, 1.0), result(2, 1e-2, 0.8, 0.6),  // seed 2 at 0.4: t = 0.5, facts 0.8
        result(2, 1e-1, 0.0, 0.0, true),                       // diverged: not on the curve
        result(3, 1e-3, 0.5, 0.9), result(3, 1e-2, 0.9, 0.1),  // seed 3 starts above 0.4
    };
    const std::vector<EqualTask> table = equal_task_table(runs, {0.4, 0.95});
    REQUIRE(table.size() == 2);
    const EqualTask& at40 = table[0];
    CHECK(at40.method == experiment::Method::corda);
    CHECK(at40.rank == 8);
    CHECK(at40.seeds == 3);
    CHECK(at40.reached == 2);
    CHECK(at40.above == 1);
    CHECK(at40.facts.mean == doctest::Approx(0.65).epsilon(1e-12));
    CHECK(at40.facts.stddev == doctest::Approx(std::sqrt(0.045)).epsilon(1e-12));  // (0.5, 0.8): sample sd
    CHECK(at40.lr.mean == doctest::Approx(std::pow(10.0, -2.5)).epsilon(1e-12));
    CHECK(table[1].reached == 0);
    CHECK(table[1].above == 0);
}

TEST_CASE("equal task score: the verdict on the paper's ordering") {
    auto row = [](experiment::Method m, double facts, std::size_t reached = 3) {
        EqualTask e;
        e.method = m;
        e.rank = 8;
        e.level = 0.5;
        e.seeds = 3;
        e.reached = reached;
        e.facts.mean = facts;
        return e;
    };
    std::vector<EqualTask> table = {row(experiment::Method::lora, 0.1), row(experiment::Method::milora, 0.2), row(experiment::Method::corda, 0.3),
                                    row(experiment::Method::lora_null_v1, 0.25), row(experiment::Method::lora_null_v2, 0.9)};
    CHECK(paper_ordering(table, 8, 0.5, experiment::Method::lora_null_v2) == "holds");
    CHECK(paper_ordering(table, 8, 0.5, experiment::Method::lora_null_v1) == "does not hold (corda >= lora-null-v1)");
    CHECK(paper_ordering(table, 8, 0.9, experiment::Method::lora_null_v2) == "not measured (lora did not run)");
    table[1] = row(experiment::Method::milora, 0.2, 2);
    CHECK(paper_ordering(table, 8, 0.5, experiment::Method::lora_null_v2) == "not measured (milora reached it on 2 of 3 seeds)");
    const std::vector<Verdict> v = verdicts(table);
    REQUIRE(v.size() == 1);
    CHECK(v[0].v1.rfind("not measured", 0) == 0);
}

TEST_CASE("the whole pipeline on a tiny model: invariants and outputs") {
    const fs::path out = work_dir() / "results";
    const Result r = run(LORANULL_EXPERIMENT_PATH, "--model '" + tiny_model().string() + "' --out '" + out.string() +
                                                       "' --steps 40 --ranks 4,8 --batch 8 --calib-samples 32 --digits 1 "
                                                       "--seeds 2 --lr-full 3e-3 --lr-adapter 1e-2 --quiet");
    INFO(r.out << r.err);
    REQUIRE(r.status == 0);
    CHECK(!fs::exists(out.string() + ".partial"));
    const nlohmann::json j = nlohmann::json::parse(slurp(out / "results.json"));
    CHECK(j["format"] == "loranull.experiment/2");
    CHECK(j["settings"]["ranks"] == nlohmann::json::array({4, 8}));
    REQUIRE(j["runs"].size() == 26);  // (full once + 6 adapters x 2 ranks) x 1 rate x 2 seeds
    std::set<std::string> methods;
    std::map<long, int> runs_at_rank;
    for (const auto& run : j["runs"]) {
        const std::string method = run["method"];
        methods.insert(method);
        ++runs_at_rank[run["rank"].get<long>()];
        INFO(method);
        CHECK((run["rank"] == 0) == (method == "full"));
        if (method == "lora")  // rank r on 7 projections of 2 blocks: r (in + out) each
            CHECK(run["trainable"].get<long>() == run["rank"].get<long>() * 2 * (2 * (32 + 32) + 2 * (32 + 16) + 2 * (32 + 64) + (64 + 32)));
        CHECK(run["losses"].size() == 40);
        // The loss falls: the last 4 steps against the first 4.
        double first = 0, last = 0;
        for (int i = 0; i < 4; ++i) first += double(run["losses"][i]), last += double(run["losses"][39 - i]);
        CHECK(last < first);
        if (method != "full") {
            // Outputs unchanged at initialisation (float logits).
            CHECK(double(run["init_logit_change"]) <= 1e-4);
            CHECK(run["layers"].size() == 2 * 7);
        }
        if (method == "lora-null-v1" || method == "lora-null-v2") CHECK(double(run["null_space_residual"]) <= 1e-5);
        if (method == "lora-null-v2")
            for (const auto& layer : run["layers"]) {
                CHECK(bool(layer["bound_applies"]));
                CHECK(double(layer["output_change"]) <= double(layer["bound"]) * (1 + 1e-9) + 1e-12);
                CHECK(double(layer["output_change"]) > 0);  // B moved: the bound was tested, not trivially met
            }
        if (method == "lora-null-v1")  // A trains: the v2 bound is not claimed
            for (const auto& layer : run["layers"]) CHECK(!bool(layer["bound_applies"]));
    }
    CHECK(methods.size() == 7);
    CHECK(runs_at_rank == std::map<long, int>{{0, 2}, {4, 12}, {8, 12}});
    CHECK(bool(j["checks"]["ok"]));
    CHECK(j["summary"].size() == 13);
    check_csv(out / "runs.csv", 26);
    check_csv(out / "summary.csv", 13);
    check_csv(out / "layers.csv", 24 * 14);
    // Equal task score: every (method, rank) at each of the 3 default levels;
    // a row's value fields are empty when no seed reached the level.
    CHECK(j["task_levels"] == nlohmann::json::array({0.25, 0.5, 0.9}));
    REQUIRE(j["equal_task"].size() == 13 * 3);
    for (const auto& e : j["equal_task"]) CHECK(e.contains("fact_accuracy") == (e["reached"].get<long>() > 0));
    CHECK(j["verdicts"].size() == 2 * 3);  // ranks x levels
    CHECK(slurp(out / "runs.csv").rfind("method,rank,lr,seed,", 0) == 0);
    check_csv(out / "equal_task.csv", 13 * 3);
    const std::string equal_csv = slurp(out / "equal_task.csv");
    CHECK(equal_csv.rfind("method,rank,task_level,seeds,seeds_reached,", 0) == 0);
    CHECK(std::count(equal_csv.begin(), equal_csv.end(), '\n') == 1 + 13 * 3);
    CHECK(slurp(out / "frontier.png.gp").find("set multiplot layout 1,2") != std::string::npos);
    // One rate per method: no curve to read, and the terminal says so.
    CHECK(r.out.find("needs two or more rates per method") != std::string::npos);
    for (const char* png : {"frontier.png", "losses.png", "spectrum.png"}) check_png(out / png);
    CHECK(r.out.find("lora-null-v2") != std::string::npos);

    // Runs of separate processes merge into one report; a rerun replaces its folder.
    const fs::path other = work_dir() / "results-lora";
    const std::string small = "--model '" + tiny_model().string() + "' --methods lora --lr-adapter 1e-2 --steps 40 "
                              "--rank 4 --batch 8 --calib-samples 32 --digits 1 --seeds 1 --quiet --out ";
    REQUIRE(run(LORANULL_EXPERIMENT_PATH, small + "'" + other.string() + "'").status == 0);
    // An output of the first format (no per-run rank: the folder's --rank).
    const fs::path old = work_dir() / "results-format-1";
    fs::create_directories(old);
    {
        nlohmann::json o = nlohmann::json::parse(slurp(other / "results.json"));
        o["format"] = "loranull.experiment/1";
        o["settings"].erase("ranks");
        o["settings"]["rank"] = 4;
        for (auto& r : o["runs"]) {
            r.erase("rank");
            r["seed"] = 7;
        }
        std::ofstream(old / "results.json") << o.dump();
    }
    const fs::path merged = work_dir() / "merged";
    const Result m = run(LORANULL_EXPERIMENT_PATH, "--merge '" + out.string() + "','" + other.string() + "','" +
                                                       old.string() + "' --out '" + merged.string() + "' --quiet");
    INFO(m.err);
    CHECK(m.status == 0);
    const nlohmann::json mj = nlohmann::json::parse(slurp(merged / "results.json"));
    CHECK(mj["runs"].size() == 28);
    CHECK(mj["runs"][27]["rank"] == 4);
    CHECK(mj["summary"].size() == 13);  // the extra seeds of lora at rank 4, 1e-2 join their (method, rank, rate)
    CHECK(mj["settings"]["ranks"] == nlohmann::json::array({4, 8}));
    check_csv(merged / "runs.csv", 28);
    check_png(merged / "frontier.png");
    const Result again = run(LORANULL_EXPERIMENT_PATH, small + "'" + out.string() + "'");
    CHECK(again.status == 0);
    CHECK(nlohmann::json::parse(slurp(out / "results.json"))["runs"].size() == 1);
    const Result bad_merge = run(LORANULL_EXPERIMENT_PATH, "--merge /nonexistent --out '" + merged.string() + "'");
    CHECK(bad_merge.status == 1);
    CHECK(bad_merge.err.find("cannot open /nonexistent/results.json") != std::string::npos);
}

TEST_CASE("bad input: one clear message, non-zero exit, nothing written") {
    const fs::path out = work_dir() / "bad-out";
    const std::string model = "--model '" + tiny_model().string() + "' --out '" + out.string() + "' --quiet ";
    struct Case {
        std::string args, message;
    };
    const fs::path corrupt = work_dir() / "corrupt-model";
    fs::create_directories(corrupt);
    fs::copy(tiny_model(), corrupt, fs::copy_options::overwrite_existing | fs::copy_options::recursive);
    {
        const std::string bytes = slurp(corrupt / "model.safetensors");
        std::ofstream(corrupt / "model.safetensors", std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.size() / 2);
    }
    const fs::path bad_facts = work_dir() / "bad-facts-model";
    fs::create_directories(bad_facts);
    fs::copy(tiny_model(), bad_facts, fs::copy_options::overwrite_existing | fs::copy_options::recursive);
    std::ofstream(bad_facts / "facts.tsv", std::ios::trunc) << "entity\tattribute\tvalue\nonly-two\tfields\n";
    const fs::path foreign = work_dir() / "foreign";
    fs::create_directories(foreign);
    std::ofstream(foreign / "keep.txt") << "not ours";

    const Case cases[] = {
        {"--model /nonexistent/model --quiet", "is not a folder"},
        {model + "--methods lora,dora", "unknown method 'dora'"},
        {model + "--rank 33", "--rank 33 does not fit the model"},
        {model + "--ranks 2,33", "--rank 33 does not fit the model"},
        {model + "--rank 4 --ranks 2,4", "--rank and --ranks: give one of them"},
        {model + "--ranks 2,x", "--ranks x: need a positive integer"},
        {model + "--ranks 2,2", "--ranks: 2 is given twice"},
        {model + "--task-levels 0.5,1.5", "--task-levels 1.5: need a number in"},
        {model + "--lr-adapter 1e-2,fast", "--lr-adapter fast: need a number in"},
        {model + "--device cuda", "--device cuda"},
        {model + "--device tpu", "choose cpu or cuda"},
        {model + "--steps", "--steps needs a value"},
        {model + "--steps ten", "need an integer"},
        {model + "--frobnicate", "unknown option '--frobnicate'"},
        {model + "--rank 4 --text /nonexistent/jargon.txt.gz", "cannot open /nonexistent/jargon.txt.gz"},
        {model, "--rank 32 does not fit the model"},  // the default rank, on a model 32 wide
        {"--model '" + corrupt.string() + "' --out '" + out.string() + "' --quiet", "model.safetensors"},
        {"--model '" + bad_facts.string() + "' --out '" + out.string() + "' --rank 4 --quiet", "facts.tsv line 2"},
        {"--model '" + tiny_model().string() + "' --out '" + foreign.string() + "' --quiet", "refusing to replace"},
    };
    for (const Case& c : cases) {
        INFO(c.args);
        const Result r = run(LORANULL_EXPERIMENT_PATH, c.args);
        INFO(r.err);
        CHECK(r.status == 1);
        CHECK(r.err.find(c.message) != std::string::npos);
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);  // one line, no stack of errors
        CHECK(!fs::exists(out));
        CHECK(!fs::exists(out.string() + ".partial"));
    }
    CHECK(slurp(foreign / "keep.txt") == "not ours");

    const Result missing = run(LORANULL_PRETRAIN_PATH, "--steps 3");
    CHECK(missing.status == 1);
    CHECK(missing.err.find("--out DIR is required") != std::string::npos);
    const Result exists = run(LORANULL_PRETRAIN_PATH, "--out '" + tiny_model().string() + "' --steps 3 --quiet");
    CHECK(exists.status == 1);
    CHECK(exists.err.find("exists (pass --force") != std::string::npos);
}
