#pragma once
// AdapterBuilder<Bk>: LoRA-Null (or any method of lora/methods.hpp) for a
// whole Hugging Face LLaMA checkpoint, streamed block by block on backend Bk
// (docs/loranull-build.md; loranull-build is a thin main over it).
//
//   1. check      every input before anything is written: the checkpoint's
//                 headers, the rank against every projection, the calibration
//                 ids against the vocabulary, too few tokens
//   2. folder     OUT new, or a resumable run of the same settings (build_folder.hpp)
//   3. stream     hidden states (dim x tokens, float) stay on the backend
//                 between blocks; block l's weights are read, its four input
//                 covariances accumulated in double during its forward pass
//                 (llama/calibration.hpp), its seven projections initialised
//                 (lora/methods.hpp) and measured (lora/knowledge_report.hpp),
//                 and its block file written; then everything of block l is
//                 freed. Hidden states come from the ORIGINAL weights: at
//                 initialisation the adapted block computes the same function.
//   4. assemble   OUT/model + OUT/adapter from the block files, one tensor at
//                 a time (build_assembly.hpp), then OUT/report.json.
//
// Generic over the backend (every product goes through the seam, no Eigen)
// and over the communicator (parallel/communicator.hpp): under mpirun each
// rank forwards its own share of the samples (a block's output for a sample
// depends on that sample only), each block's four covariances are summed onto
// the rank that decomposes it (blocks go round the ranks), and rank 0 writes
// every file, so the outputs have the single-process layout (build_ranks.hpp
// keeps the ranks in step and their errors shared).

#include <algorithm>
#include <array>
#include <chrono>
#include <concepts>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "loranull/core/host_matrix.hpp"
#include "loranull/io/hf_checkpoint.hpp"
#include "loranull/io/safetensors.hpp"
#include "loranull/llama/calibration.hpp"
#include "loranull/llama/model.hpp"
#include "loranull/lora/methods.hpp"
#include "loranull/parallel/communicator.hpp"
#include "loranull/pipeline/block_decomposition.hpp"
#include "loranull/pipeline/build_assembly.hpp"
#include "loranull/pipeline/build_folder.hpp"
#include "loranull/pipeline/build_options.hpp"
#include "loranull/pipeline/build_ranks.hpp"
#include "loranull/pipeline/build_settings.hpp"
#include "loranull/pipeline/calibration_text.hpp"
#include "loranull/pipeline/calibration_tokens.hpp"
#include "loranull/text/tokenizer.hpp"

namespace loranull::pipeline {

/// What a caller may watch (all optional): the tool draws a progress bar.
struct BuildProgress {
    std::function<void(Index total, Index done)> start;    // blocks in all, already written
    std::function<void(const std::string&)> status;        // what runs now
    std::function<void(const std::string&)> block_written;  // one more block done
    std::function<void(const std::string&)> note;           // a line for the user ("resuming: ...")
};

struct BuildResult {
    bool already_finished = false;  // OUT held a finished run of these settings: nothing done
    bool stopped = false;           // stop_after_blocks reached: rerun to resume
    nlohmann::json report;          // OUT/report.json (when finished now)
    std::vector<std::string> warnings;
};

template <class Bk, class Comm = parallel::SingleProcess>
class AdapterBuilder {
public:
    using Model = LlamaModel<Bk, float>;
    using MatrixF = matrix_t<Bk, float>;
    using MatrixD = matrix_t<Bk, double>;

    /// One process.
    AdapterBuilder(Bk& backend, BuildOptions options, BuildProgress progress = {})
        requires std::same_as<Comm, parallel::SingleProcess>
        : AdapterBuilder(backend, single_process(), std::move(options), std::move(progress)) {}

    /// One rank of comm.size(); every rank runs run() with the same options.
    /// Only rank 0 reports progress.
    AdapterBuilder(Bk& backend, Comm& comm, BuildOptions options, BuildProgress progress = {})
        : b_(backend), ranks_(comm), o_(std::move(options)), method_(parse_method_option(o_.method)), folder_(o_.out),
          progress_(ranks_.is_root() ? std::move(progress) : BuildProgress{}) {}

    BuildResult run() {
        const auto start = Clock::now();
        // 1. Every input checked before anything is written (by every rank:
        //    each reads the same checkpoint headers and calibration).
        std::optional<io::HfCheckpointReader> checkpoint;
        nlohmann::json settings;
        ranks_.locally([&] {
            check_request();
            checkpoint.emplace(o_.model, "--model " + o_.model);
            checkpoint->check_all();
            config_ = checkpoint->config();
            layers_ = parse_layer_list(o_.layers, config_.n_layers);
            check_rank();
            if (o_.has_calibration()) {
                calibration_ = read_calibration(o_, config_);
                batch_ = default_batch(o_.batch, calibration_);
            }
            check_rank_deficiency();
            settings = settings_json(o_, layers_, *checkpoint, calibration_, batch_);
        });
        ranks_.agree();
        ranks_.agree_on("this rank's settings (build.json)", settings.dump());

        // 2. The output folder (rank 0's): new, or a resumable run of the same
        //    settings; rank 0 says which blocks are left, every rank follows.
        BuildResult result;
        std::vector<Index> pending;
        folder_.expect(settings);
        ranks_.locally([&] {
            if (!ranks_.is_root()) return;
            result.already_finished = folder_.prepare(settings);
            if (!result.already_finished)
                for (Index l : layers_)
                    if (!folder_.block_done(l)) pending.push_back(l);
        });
        ranks_.agree();
        share_plan(result.already_finished, pending);
        if (result.already_finished) return result;

        // 3. The blocks still to compute.
        const Index total = static_cast<Index>(layers_.size()), done = total - static_cast<Index>(pending.size());
        if (progress_.start) progress_.start(total, done);
        if (!pending.empty() && done > 0 && progress_.note)
            progress_.note("resuming: " + std::to_string(done) + " of " + std::to_string(total) +
                           " blocks already written");
        result.stopped = stream_blocks(*checkpoint, pending);
        if (!result.stopped) {
            // 4. Assemble the outputs from the block files (rank 0).
            const BuildTimings summed = timings_summed_over_ranks();
            ranks_.locally([&] {
                if (!ranks_.is_root()) return;
                const auto assembly_start = Clock::now();
                BuildAssembly assembly(o_, layers_, folder_);
                if (!o_.export_plain) assembly.write_residual_model(*checkpoint);
                assembly.write_adapter(b_, calibration_.source, config_.n_layers);
                timings_.assembly = seconds_since(assembly_start);
                BuildTimings all_ranks = summed;
                all_ranks.assembly = timings_.assembly;  // rank 0's alone
                nlohmann::json extra = nlohmann::json::object();
                if constexpr (requires(Bk& b) { b.peak_device_memory_bytes(); })
                    extra["peak_device_memory_bytes"] = b_.peak_device_memory_bytes();  // rank 0's device
                result.report = write_report(o_, layers_, folder_, calibration_, timings_, seconds_since(start),
                                             warnings_, ranks_.size(), ranks_.many() ? &all_ranks : nullptr, extra);
                if (!o_.keep_blocks) folder_.remove_blocks();
            });
            ranks_.agree();
        }
        result.warnings = warnings_;
        return result;
    }

private:
    using Clock = BuildClock;

    /// pipeline::settled_seconds_since on this builder's backend.
    double settled_seconds_since(Clock::time_point t) const { return pipeline::settled_seconds_since(b_, t); }

    static Comm& single_process() {
        static parallel::SingleProcess single;
        return single;
    }

    /// Rank 0's plan (finished already? the blocks left), on every rank.
    void share_plan(bool& finished, std::vector<Index>& pending) {
        if (!ranks_.many()) return;
        std::vector<std::string> parts{finished ? "1" : "0"};
        for (Index l : pending) parts.push_back(std::to_string(l));
        const std::vector<std::string> plan = parallel::unpack(ranks_.from_root(parallel::pack(parts)));
        finished = plan.at(0) == "1";
        pending.clear();
        for (std::size_t k = 1; k < plan.size(); ++k) pending.push_back(std::stoll(plan[k]));
    }

    /// Every rank's timings summed (microseconds, so that integers add).
    BuildTimings timings_summed_over_ranks() {
        BuildTimings sum = timings_;
        if (!ranks_.many()) return sum;
        std::array<std::int64_t, std::tuple_size_v<decltype(sum.parts())>> us{};
        auto parts = sum.parts();
        for (std::size_t k = 0; k < parts.size(); ++k) us[k] = std::llround(*parts[k] * 1e6);
        ranks_.comm().sum(std::span<std::int64_t>(us));
        for (std::size_t k = 0; k < parts.size(); ++k) *parts[k] = double(us[k]) * 1e-6;
        return sum;
    }

    static const MethodInfo& parse_method_option(const std::string& name) {
        if (const MethodInfo* m = find_method(name)) return *m;
        refuse_request(unknown_method_message(name));
    }

    /// What the options alone can tell, before any file is opened.
    void check_request() const {
        namespace fs = std::filesystem;
        if (o_.rank < 1) refuse_request("--rank must be at least 1, got ", o_.rank);
        if (!(o_.alpha >= 0) || !std::isfinite(o_.alpha)) refuse_request("--alpha must be a positive number, got ", o_.alpha);
        if (!o_.calib.empty() && !o_.calib_text.empty()) refuse_request("give --calib or --calib-text, not both");
        if ((!o_.text_format.empty() || o_.text_field != "text") && o_.calib_text.empty())
            refuse_request("--format and --text-field describe --calib-text: give --calib-text");
        if (method_.needs_data && !o_.has_calibration())
            refuse_request("method ", o_.method, " needs calibration data: give --calib TOKENS.safetensors");
        if ((o_.samples || o_.seq_len) && !o_.has_calibration())
            refuse_request("--samples and --seq-len select calibration data: give --calib");
        if (o_.samples < 0 || o_.seq_len < 0 || o_.batch < 0)
            refuse_request("--samples, --seq-len and --batch must be at least 1");
        if (o_.dtype && !io::is_floating(*o_.dtype))
            refuse_request("--dtype must be f32, bf16 or f16 (or F64), got ", io::dtype_name(*o_.dtype));
        for (const std::string& input : {o_.model, o_.calib, o_.calib_text}) {
            std::error_code ec;
            if (input.empty() || !fs::exists(input) || !fs::exists(o_.out)) continue;
            if (fs::weakly_canonical(input, ec) == fs::weakly_canonical(o_.out, ec))
                refuse_request("--out ", o_.out, " is also an input; write to another folder");
        }
    }

    void check_rank() const {
        for (ProjectionKind kind : all_projections) {
            const auto shape = projection_shape(config_, kind);
            if (o_.rank > std::min(shape[0], shape[1]))
                refuse_input("--rank ", o_.rank, " exceeds min(out, in) = ", std::min(shape[0], shape[1]), " of ",
                             projection_path(kind), " [", shape[0], ", ", shape[1], "]");
        }
    }

    /// Fewer tokens than a covariance's size: rank-deficient (rank C <= tokens).
    void check_rank_deficiency() {
        if (!o_.has_calibration() || !method_.needs_data) return;
        const Index tokens = calibration_.count();
        for (auto [n, what] : {std::pair<Index, const char*>{config_.dim, "hidden_size"},
                               {config_.q_dim(), "num_attention_heads x head_dim"},
                               {config_.hidden_dim, "intermediate_size"}}) {
            if (tokens >= n) continue;
            const std::string message = "calibration has " + std::to_string(tokens) + " tokens (" +
                                        std::to_string(calibration_.samples) + " x " +
                                        std::to_string(calibration_.seq_len) + "), fewer than the " +
                                        std::to_string(n) + " inputs (" + what +
                                        ") of some projections: their covariances have rank <= " +
                                        std::to_string(tokens) + ", at least " + std::to_string(n - tokens) +
                                        " zero eigenvalues against rank " + std::to_string(o_.rank) +
                                        ", so the chosen directions are partly arbitrary";
            if (!o_.allow_rank_deficient)
                refuse_input(message, "; give at least ", n, " tokens, or --allow-rank-deficient to continue");
            warnings_.push_back("warning: " + message + " (continuing: --allow-rank-deficient)");
            break;
        }
    }

    void status(const std::string& what) const {
        if (progress_.status) progress_.status(what);
    }

    /// Forwards the calibration through blocks 0 .. last pending (hidden states
    /// need every block before it), decomposing and writing the pending ones.
    /// Returns true when stopped early (stop_after_blocks).
    ///
    /// Under mpirun: this rank forwards its share of the samples; after each
    /// forward the ranks agree (a failure anywhere stops them all); the block's
    /// covariances are summed onto its owner, which decomposes it while the
    /// others go on with the next block; the owner hands the block's files to
    /// rank 0 after the next agreement (deliver), and rank 0 writes them.
    bool stream_blocks(io::HfCheckpointReader& checkpoint, const std::vector<Index>& pending) {
        if (pending.empty()) return false;
        const std::set<Index> pending_set(pending.begin(), pending.end());
        const bool calibrate = !calibration_.tokens.empty();
        const Index last = pending.back(), seq_len = calibration_.seq_len;
        const auto [first_sample, samples] = ranks_.share(calibration_.samples);
        const Index tokens = samples * seq_len;
        MatrixF hidden;             // dim x tokens of this rank's samples
        HostMatrix<float> hidden_host;  // the same, with --hidden-on-host
        ranks_.locally([&] {
            if (!calibrate || tokens == 0) return;  // more ranks than samples: this one only sums zeros
            status("embedding");
            auto t = Clock::now();
            const MatrixF table = b_.transpose(
                b_.upload(checkpoint.read<float>("model.embed_tokens.weight", config_.vocab_size, config_.dim)));
            timings_.load += settled_seconds_since(t);
            t = Clock::now();
            const auto from = calibration_.tokens.begin() + first_sample * seq_len;
            hidden = b_.embedding_forward(table, std::vector<std::int32_t>(from, from + tokens));
            if (o_.hidden_on_host) hidden_host = b_.download(std::exchange(hidden, MatrixF{}));
            timings_.embed += settled_seconds_since(t);
        });
        Index written = 0;  // pending blocks computed (the same count on every rank)
        Delivery delivery;  // the last block's files, on their way from their owner to rank 0
        bool stopped = false;
        for (Index l = 0; l <= last && !stopped; ++l) {
            const bool is_pending = pending_set.count(l) != 0;
            if (!is_pending && !calibrate) continue;
            std::optional<BlockCalibration<Bk, double>> cal;
            ranks_.locally([&] {
                status((is_pending ? "block " : "forward through finished block ") + std::to_string(l));
                if (calibrate && is_pending) {
                    cal.emplace(b_, config_, o_.normalisation, o_.calibration_file() + "#" + calibration_.hash,
                                o_.accumulation);
                    cal->expect_outputs();  // forward_samples' output hook: the report's ||W X||
                }
                if (!calibrate || samples == 0) return;  // no forward here: decompose() reads the weights it needs
                auto t = Clock::now();
                typename Model::Block block = checkpoint.load_block<float>(b_, l);
                Model::fuse_products(b_, block);  // q/k/v and gate/up: one product each
                timings_.load += settled_seconds_since(t);
                forward_samples(block, l, l < last, samples, hidden, hidden_host, cal);
            });
            agree_timed();  // every rank's forward, and the owner's decomposition of the block before
            deliver(delivery);
            if (!is_pending) continue;
            const int owner = ranks_.owner(written);
            if (cal) {
                const auto t = Clock::now();
                cal->sum_to(ranks_.comm(), owner);
                timings_.reduction += settled_seconds_since(t);
            }
            ranks_.locally([&] {
                if (ranks_.rank() != owner) return;
                BlockOutput output = decompose(checkpoint, l, cal ? &*cal : nullptr);
                if (ranks_.is_root())
                    publish(l, output);
                else
                    delivery.output = std::move(output);
            });
            delivery.owner = owner;
            delivery.layer = l;
            ++written;
            stopped = o_.stop_after_blocks >= 0 && written >= o_.stop_after_blocks && l != last;
        }
        agree_timed();
        deliver(delivery);
        agree_timed();  // rank 0's last write
        return stopped;
    }

    /// agree(), its wait for the slowest rank billed to the exchange between
    /// ranks (timings_.reduction).
    void agree_timed() {
        const auto t = Clock::now();
        ranks_.agree();
        timings_.reduction += seconds_since(t);
    }

    /// One block forwarded over this rank's samples in batches, its four
    /// input covariances accumulated by the hook; `hidden` becomes the
    /// block's output when it is needed (keep_output).
    void forward_samples(const typename Model::Block& block, Index l, bool keep_output, Index samples,
                         MatrixF& hidden, HostMatrix<float>& hidden_host,
                         std::optional<BlockCalibration<Bk, double>>& cal) {
        const Index seq_len = calibration_.seq_len;
        double hook_seconds = 0;
        typename Model::Hook hook;
        typename Model::OutputHook outputs;
        if (cal) {
            hook = [&](Index, LinearInput which, const MatrixF& x) {
                const auto h = Clock::now();
                cal->add(which, x, seq_len);
                hook_seconds += settled_seconds_since(h);
            };
            outputs = [&](Index, ProjectionKind kind, const MatrixF& y) {
                const auto h = Clock::now();
                cal->add_output(kind, y, seq_len);
                hook_seconds += settled_seconds_since(h);
            };
        }
        const auto t = Clock::now();
        for (Index s = 0; s < samples; s += batch_) {
            const Index count = std::min(batch_, samples - s);
            MatrixF x = o_.hidden_on_host ? b_.upload(columns(hidden_host, s * seq_len, count * seq_len))
                                          : b_.block(hidden, 0, s * seq_len, config_.dim, count * seq_len);
            MatrixF y = Model::block_forward(b_, config_, block, l, std::move(x), seq_len, hook, outputs);
            if (!keep_output) continue;  // the last pending block's output is never used
            if (o_.hidden_on_host)
                set_columns(hidden_host, s * seq_len, b_.download(y));
            else
                b_.set_block(hidden, 0, s * seq_len, y);
        }
        timings_.forward += settled_seconds_since(t) - hook_seconds;
        timings_.covariance += hook_seconds;
    }

    /// Columns [first, first + count) of a host matrix (contiguous: column-major).
    static HostMatrix<float> columns(const HostMatrix<float>& m, Index first, Index count) {
        HostMatrix<float> out(m.rows(), count);
        std::copy_n(m.data() + first * m.rows(), count * m.rows(), out.data());
        return out;
    }
    static void set_columns(HostMatrix<float>& m, Index first, const HostMatrix<float>& values) {
        std::copy_n(values.data(), values.size(), m.data() + first * m.rows());
    }

    /// A block computed by a rank other than 0, to hand over.
    struct Delivery {
        int owner = 0;  // 0: nothing to hand over
        Index layer = -1;
        BlockOutput output;  // on the owner
    };

    /// The owner sends the block's files, rank 0 writes them (the others go
    /// on). Only after an agree(): both are known to be well.
    void deliver(Delivery& d) {
        if (d.owner == 0) return;
        const auto t = Clock::now();
        if (ranks_.rank() == d.owner) ranks_.comm().send(d.output.pack(), 0);
        BlockOutput received;
        if (ranks_.is_root()) received = BlockOutput::unpack(ranks_.comm().receive(d.owner));
        timings_.reduction += seconds_since(t);
        if (ranks_.is_root()) ranks_.locally([&] { publish(d.layer, received); });  // billed to block writes
        d = Delivery{};
    }

    /// Rank 0 writes a block's files and counts it written.
    void publish(Index layer, const BlockOutput& output) {
        const auto t = Clock::now();
        folder_.publish(output);
        warnings_.insert(warnings_.end(), output.warnings.begin(), output.warnings.end());
        timings_.write += seconds_since(t);
        if (progress_.block_written) progress_.block_written("block " + std::to_string(layer) + " written");
    }

    /// The owner's work on block `layer` once its covariances are summed
    /// (block_decomposition.hpp).
    BlockOutput decompose(io::HfCheckpointReader& checkpoint, Index layer, const BlockCalibration<Bk, double>* cal) {
        const auto t0 = Clock::now();
        BlockOutput output = decompose_block(b_, o_, method_, config_, folder_.settings_hash(), checkpoint, layer, cal,
                                             &timings_);
        timings_.decomposition += settled_seconds_since(t0);
        return output;
    }

    Bk& b_;
    BuildRanks<Comm> ranks_;
    BuildOptions o_;
    const MethodInfo& method_;
    BuildFolder folder_;
    BuildProgress progress_;
    LlamaConfig config_;
    std::vector<Index> layers_;  // blocks to adapt, ascending
    CalibrationTokens calibration_;
    Index batch_ = 0;
    std::vector<std::string> warnings_;
    BuildTimings timings_;
};

}  // namespace loranull::pipeline
