// loranull-eval: the next-token NLL, perplexity and bits per token of an HF
// checkpoint, alone or with a PEFT LoRA adapter merged in (docs/loranull-eval.md):
//
//   loranull-eval --model OUT/model --adapter OUT/adapter --calib ids.safetensors
//
// How a user checks that loranull-build's residual model plus its adapter is
// the base model again, and measures what a fine-tuned adapter kept.
#include <bit>
#include <cstdio>
#include <optional>
#include <string>

#include <loranull/loranull.hpp>
#include <loranull/io/peft_adapter.hpp>
#include <loranull/llama/evaluate.hpp>

#include "../tool_options.hpp"
#include "options.hpp"

using namespace loranull;
using namespace loranull::tools::eval;

namespace {

int run(const Options& o) {
    static_assert(std::endian::native == std::endian::little, "logits are written as little-endian F32");
    CpuBackend cpu;
    // 1. The model, and the adapter merged into it.
    const io::HfCheckpointReader checkpoint_config(o.model, "--model " + o.model);
    const LlamaConfig config = checkpoint_config.config();
    std::optional<io::PeftAdapter> adapter;
    if (!o.adapter.empty()) adapter = io::read_peft_adapter(o.adapter);
    // 2. The tokens, checked against the model before the weights are read.
    pipeline::BuildOptions source;  // the calibration fields, read as loranull-build reads them
    source.model = o.model;
    source.calib = o.calib;
    source.calib_text = o.calib_text;
    source.text_format = o.text_format;
    source.text_field = o.text_field;
    source.samples = o.samples;
    source.seq_len = o.seq_len;
    source.seed = o.seed;
    const pipeline::CalibrationTokens data = pipeline::read_calibration(source, config);
    if (data.seq_len < 2)
        pipeline::refuse_input(o.calib.empty() ? "--calib-text " : "--calib ", source.calibration_file(),
                               ": sequences of 1 token predict nothing");
    LlamaModel<CpuBackend, float> model = io::load_hf_checkpoint<float>(cpu, o.model);
    if (adapter) io::merge_peft_adapter(model, *adapter);
    const Index batch = pipeline::default_batch(o.batch, data);

    // 3. The NLL, batch by batch; the logits streamed into their file as they come.
    NllResult nll;
    auto evaluate = [&](std::ostream* logits_out) {
        std::function<void(Index, const CpuBackend::Matrix<float>&)> sink;
        if (logits_out)
            sink = [&](Index, const CpuBackend::Matrix<float>& logits) {  // vocab x tokens: each column is one position
                const HostMatrix<float> host = cpu.download(logits);
                logits_out->write(reinterpret_cast<const char*>(host.data()), std::streamsize(host.size() * sizeof(float)));
            };
        nll = sequence_nll(model, data.tokens, data.seq_len, batch, sink);
    };
    if (o.logits_out.empty()) {
        evaluate(nullptr);
    } else {
        const std::map<std::string, std::string> metadata{{"format", "pt"}, {"loranull.model", o.model},
                                                          {"loranull.adapter", o.adapter},
                                                          {"loranull.calibration", data.source.dump()}};
        io::write_safetensors(o.logits_out, metadata,
                              {{"logits", io::Dtype::F32, {data.samples, data.seq_len, config.vocab_size},
                                [&](std::ostream& out) { evaluate(&out); }}});
    }

    // 4. The figures.
    std::printf("sequences %td x %td, predictions %td\n", data.samples, data.seq_len, nll.predictions);
    std::printf("nll %.9g nats/token, perplexity %.9g, bits/token %.9g\n", nll.mean(), nll.perplexity(),
                nll.bits_per_token());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return tools::run_tool("loranull-eval", [&] { return run(parse_options(argc, argv)); });
}
