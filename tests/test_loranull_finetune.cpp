// loranull-finetune run as a user runs it (docs/loranull-finetune.md): every
// family of SPEC.md section 9 as a tiny checkpoint with a tokenizer.json,
// adapters from loranull-build, then trained from text and from JSONL
// prompt/response pairs. The loss falls; --train B leaves A bit-identical and
// the knowledge bound holds in every module; a stopped run resumes to the
// same bits; 2 MPI ranks give 1 rank's adapter; --export plain on the
// unmodified base is the trained model (loranull-eval's NLL); every bad input
// is one line and a non-zero exit.
#include "finetune_fixtures.hpp"

TEST_CASE("every family from text: the loss falls, --train B (the lora-null-v2 default) keeps A bit-identical, the bound holds") {
    for (const auto& f : test_family::families()) {
        CAPTURE(f.name);
        const fs::path b = built(f), run = dir() / "text" / f.name;
        fs::remove_all(run);
        const auto r = finetune(common_args(b) + "--data " + q(files().train) + " --seq-len 12 --steps 12 --batch 4 --lr 0.05 " +
                                "--calib-text " + q(files().calib) + " --calib-samples 4 --calib-seq-len 12 " +
                                "--calib-seed 9 --out " + q(run));
        REQUIRE_MESSAGE(r.status == 0, r.err);
        const json report = read_json(run / "finetune.json");
        CHECK(report["train"] == "B");
        CHECK(report["method"] == "lora-null-v2");
        const std::vector<double> loss = losses(run);
        REQUIRE(loss.size() == 12);
        // The same 4 windows every step: the loss falls step after step (a
        // random tiny model starts near ln(vocab) and a rank-4 B moves it slowly).
        for (std::size_t i = 1; i < loss.size(); ++i) CHECK_MESSAGE(loss[i] < loss[i - 1], test::slurp(run / "loss.csv"));
        CHECK(loss.back() < loss.front() - 0.02);
        // A frozen: every lora_A of the output is the input's, bit for bit; every B moved.
        for (const std::string& name : tensor_names(b / "adapter")) {
            CAPTURE(name);
            const HostMatrix<float> before = tensor(b / "adapter", name), after = tensor(run / "adapter", name);
            if (name.find(".lora_A.") != std::string::npos)
                CHECK(after == before);
            else
                CHECK(max_abs_difference(after, before) > 0);
        }
        // The bound in every module, on calibration windows the build did not draw.
        const json& knowledge = report["knowledge"];
        CHECK(knowledge["bounds_hold"] == true);
        REQUIRE(knowledge["modules"].size() == 7 * 2);
        for (const json& m : knowledge["modules"]) {
            CHECK(m["bound_applies"] == true);
            CHECK(m["relative_change"].get<double>() > 0);
            CHECK(m["output_change"].get<double>() <= m["bound"].get<double>() * (1 + 1e-4));
        }
        // The adapter is PEFT's: the scale kept (lora_alpha / r), the base named.
        const json config = read_json(run / "adapter" / "adapter_config.json");
        const json built_config = read_json(b / "adapter" / "adapter_config.json");
        CHECK(config["r"] == built_config["r"]);
        CHECK(config["lora_alpha"] == built_config["lora_alpha"]);
        CHECK(!fs::exists(run / "adapter" / "residual_model.safetensors"));
        CHECK(!fs::exists(run / "checkpoint"));
        CHECK(test::line_count(test::slurp(run / "loss.csv")) == 13);
        if (io::gnuplot_available()) CHECK(fs::exists(run / "loss.png"));
    }
}

TEST_CASE("every family from prompt/response JSONL, --train AB: the loss on the responses falls, A trains too") {
    for (const auto& f : test_family::families()) {
        CAPTURE(f.name);
        const fs::path b = built(f), run = dir() / "pairs" / f.name;
        fs::remove_all(run);
        const auto r = finetune(common_args(b) + "--data " + q(files().pairs) + " --format prompt-response " +
                                "--prompt-field q --response-field a --train AB --steps 10 --batch 2 --grad-accum 2 " +
                                "--lr 0.05 --seq-len 192 --out " + q(run));
        // Mistral's window of 12 tokens refuses sequences of 192, by name.
        if (f.name == "mistral") {
            CHECK(r.status == 1);
            CHECK(r.err.find("sliding_window") != std::string::npos);
            continue;
        }
        REQUIRE_MESSAGE(r.status == 0, r.err);
        const json report = read_json(run / "finetune.json");
        CHECK(report["train"] == "AB");
        CHECK(report["data"]["examples"] == 4);
        CHECK(report["data"]["prompt_template"].get<std::string>().find("### Response:") != std::string::npos);
        const std::vector<double> loss = losses(run);
        CHECK_MESSAGE(loss.back() < loss.front() - 0.05, test::slurp(run / "loss.csv"));
        const std::string a_name = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
        CHECK(max_abs_difference(tensor(run / "adapter", a_name), tensor(b / "adapter", a_name)) > 0);
    }
}

TEST_CASE("prompt/response masking: only the response (and its newline and EOS) is scored") {
    const fs::path b = built(family("llama-3"));
    const fs::path run = dir() / "masking";
    fs::remove_all(run);
    const auto r = finetune(common_args(b) + "--data " + q(files().pairs) + " --format prompt-response " +
                            "--prompt-field q --response-field a --steps 1 --batch 4 --seq-len 192 --out " + q(run));
    REQUIRE_MESSAGE(r.status == 0, r.err);
    // The template and "Name i" are masked; each response "i+1" is one digit
    // byte, then "\n" and EOS: 3 scored targets per example (byte-level BPE).
    CHECK(read_json(run / "finetune.json")["data"]["scored_tokens"] == 4 * 3);
}

TEST_CASE("a stopped run resumes to the bits of an uninterrupted one, and a finished run is not redone") {
    const fs::path b = built(family("llama-3"));
    const std::string args = common_args(b) + "--data " + q(files().calib) + " --seq-len 12 --steps 6 --batch 2 --grad-accum 2 " +
                             "--lr 0.005 --save-every 2 ";
    const fs::path whole = dir() / "resume_whole", parts = dir() / "resume_parts";
    fs::remove_all(whole);
    fs::remove_all(parts);
    auto r = finetune(args + "--out " + q(whole));
    REQUIRE_MESSAGE(r.status == 0, r.err);
    r = finetune(args + "--stop-after-steps 3 --out " + q(parts));
    CHECK(r.status == 3);
    CHECK(fs::exists(parts / "checkpoint" / "state.safetensors"));
    CHECK(!fs::exists(parts / "adapter"));
    r = finetune(args + "--out " + q(parts));
    REQUIRE_MESSAGE(r.status == 0, r.err);
    CHECK(r.err.find("resuming") != std::string::npos);
    CHECK(test::slurp(parts / "adapter" / "adapter_model.safetensors") ==
          test::slurp(whole / "adapter" / "adapter_model.safetensors"));
    CHECK(loss_table(parts) == loss_table(whole));
    r = finetune(args + "--out " + q(parts));
    CHECK(r.status == 0);
    CHECK(r.out.find("nothing to do") != std::string::npos);
    // Other settings on a finished folder: refused, not overwritten.
    r = finetune(args + "--lr 0.001 --out " + q(parts));
    CHECK(r.status == 2);
    CHECK(test::line_count(r.err) == 1);
}

TEST_CASE("--export plain on the unmodified base computes the trained model (build, fine-tune, eval)") {
    const test_family::Family f = family("qwen2");  // q/k/v biases, tied embeddings
    const fs::path b = built(f), run = dir() / "plain";
    fs::remove_all(run);
    const fs::path base = dir() / "models" / f.name;
    auto r = finetune(common_args(b) + "--data " + q(files().train) + " --seq-len 12 --steps 5 --batch 4 --lr 0.01 --export plain " +
                      "--out " + q(run));
    REQUIRE_MESSAGE(r.status == 0, r.err);
    const std::string calib = " --calib-text " + q(files().calib) + " --samples 4 --seq-len 12 --seed 3";
    const auto before = eval("--model " + q(base) + calib);
    const auto residual = eval("--model " + q(b / "model") + " --adapter " + q(run / "adapter") + calib);
    const auto plain = eval("--model " + q(base) + " --adapter " + q(run / "adapter-plain") + calib);
    REQUIRE(before.status == 0);
    REQUIRE_MESSAGE(residual.status == 0, residual.err);
    REQUIRE_MESSAGE(plain.status == 0, plain.err);
    auto nll = [](const std::string& out) { return std::stod(out.substr(out.find("nll ") + 4)); };
    CHECK(nll(plain.out) == doctest::Approx(nll(residual.out)).epsilon(1e-5));
    CHECK(std::abs(nll(before.out) - nll(residual.out)) > 1e-4);  // training changed the model
    // Any PEFT adapter on an unmodified base trains too: the plain one, A and B (its default).
    const fs::path again = dir() / "plain_again";
    fs::remove_all(again);
    r = finetune("--model " + q(base) + " --adapter " + q(run / "adapter-plain") + " --data " + q(files().train) +
                 " --seq-len 12 --steps 5 --batch 4 --lr 0.01 --out " + q(again));
    REQUIRE_MESSAGE(r.status == 0, r.err);
    CHECK(read_json(again / "finetune.json")["train"] == "AB");
    const std::vector<double> loss = losses(again);
    CHECK(loss.back() < loss.front());
    CHECK(read_json(again / "adapter" / "adapter_config.json")["r"] == 8);  // rank 2r
}

TEST_CASE("bad inputs: one line on stderr and a non-zero exit") {
    const fs::path b = built(family("llama-3")), other = built(family("llama-3.2"));
    const std::string model = "--model " + q(b / "model") + " ", adapter = "--adapter " + q(b / "adapter") + " ";
    const fs::path empty = test_text::write_file(dir(), "empty.txt", "");
    const fs::path short_text = test_text::write_file(dir(), "short.txt", sentences(1, 0));
    const fs::path missing_field = test_text::write_file(dir(), "missing.jsonl", "{\"q\": \"x\", \"a\": \"y\"}\n{\"q\": \"x\"}\n");
    const fs::path not_json = test_text::write_file(dir(), "bad.jsonl", "{\"q\": \"x\", \"a\": \"y\"}\nnot json\n");
    // Adapters whose config does not match their tensors.
    auto edited_adapter = [&](const std::string& name, const std::function<void(json&)>& edit) {
        const fs::path copy = dir() / "adapters" / name;
        fs::remove_all(copy);
        fs::create_directories(copy);
        fs::copy_file(b / "adapter" / "adapter_model.safetensors", copy / "adapter_model.safetensors");
        json config = read_json(b / "adapter" / "adapter_config.json");
        edit(config);
        std::ofstream(copy / "adapter_config.json") << config.dump(2);
        return copy;
    };
    const fs::path wrong_rank = edited_adapter("rank", [](json& c) { c["r"] = 8; });
    const fs::path wrong_targets = edited_adapter("targets", [](json& c) { c["target_modules"] = {"q_proj", "v_proj"}; });
    const std::string train = "--data " + q(files().train) + " --seq-len 12 --steps 2 ";
    struct Case {
        std::string args, message;
        int status;
    };
    const std::vector<Case> cases = {
        {adapter + train, "missing --model", 2},
        {model + train, "missing --adapter", 2},
        {model + adapter + "--steps 2", "missing --data", 2},
        {model + adapter + train + "--train C", "--train must be A, B or AB", 2},
        {model + adapter + train + "--device tpu", "--device must be cpu or cuda", 2},
        {model + adapter + train + "--warmup 1.5", "--warmup must be a fraction", 2},
        {model + adapter + train + "--epochs 2", "give --steps or --epochs, not both", 2},
        {model + adapter + train + "--prompt-field q", "describe --format prompt-response", 2},
        {model + adapter + "--data " + q(empty) + " --seq-len 12", "fewer than one window", 1},
        {model + adapter + "--data " + q(short_text) + " --seq-len 12 --batch 8", "fewer than one batch", 1},
        {model + adapter + "--data " + q(files().pairs) + " --format prompt-response --prompt-field q --response-field b --seq-len 192",
         "has no field \"b\"", 1},
        {model + adapter + "--data " + q(missing_field) + " --format prompt-response --prompt-field q --response-field a --seq-len 192",
         "line 2: the object has no field \"a\"", 1},
        {model + adapter + "--data " + q(not_json) + " --format prompt-response --prompt-field q --response-field a --seq-len 192",
         "line 2: not valid JSON", 1},
        {model + adapter + "--data " + q(dir() / "absent.txt") + " --seq-len 12", "cannot read", 1},
        {model + "--adapter " + q(other / "adapter") + " " + train, "an adapter of another model?", 1},
        {model + "--adapter " + q(wrong_rank) + " " + train, "adapter_config.json gives it r = 8", 1},
        {model + "--adapter " + q(wrong_targets) + " " + train, "is not among adapter_config.json's target_modules", 1},
        {model + "--adapter " + q(dir()) + " " + train, "adapter_config.json is missing", 1},
        {model + adapter + "--data " + q(files().train) + " --seq-len 300", "max_position_embeddings", 1},
    };
    for (const Case& c : cases) {
        CAPTURE(c.args);
        const fs::path out = dir() / "bad_out";
        fs::remove_all(out);
        const auto r = finetune(c.args + " --out " + q(out));
        CHECK(r.status == c.status);
        CHECK(test::line_count(r.err) == 1);
        CHECK_MESSAGE(r.err.find(c.message) != std::string::npos, r.err);
        CHECK(r.err.rfind("loranull-finetune: error: ", 0) == 0);
        CHECK(!fs::exists(out / "adapter"));
    }
}

#ifdef LORANULL_MPIEXEC
TEST_CASE("mpirun -np 2: the single-process adapter up to the order of the gradient sums") {
    const fs::path b = built(family("llama-3.1"));
    const std::string args = common_args(b) + "--data " + q(files().calib) + " --seq-len 12 --steps 4 --batch 2 --grad-accum 2 " +
                             "--lr 0.005 ";
    const fs::path one = dir() / "mpi_one", two = dir() / "mpi_two";
    fs::remove_all(one);
    fs::remove_all(two);
    auto r = finetune(args + "--out " + q(one));
    REQUIRE_MESSAGE(r.status == 0, r.err);
    r = test::mpirun(2, LORANULL_FINETUNE_PATH, args + "--out " + q(two), dir());
    REQUIRE_MESSAGE(r.status == 0, r.err);
    CHECK(read_json(two / "finetune.json")["ranks"] == 2);
    check_same_run(one, two, 1e-5, 1e-6);
    // Fewer micro-batches a step than ranks: refused on every rank alike.
    r = test::mpirun(2, LORANULL_FINETUNE_PATH, common_args(b) + "--data " + q(files().calib) + " --seq-len 12 --out " + q(dir() / "mpi_bad"),
                     dir());
    CHECK(r.status == 2);
    CHECK(r.err.find("--grad-accum 1 is smaller than the 2 ranks") != std::string::npos);
}
#endif
