// bench_tokenizer: loranull::text::Tokenizer on the Jargon File (Debian's
// jargon-text, 1.7 MB of English), next to the naive reference of
// loranull/text/reference.hpp in the same process, so that the ratio is read
// from one run:
//
//   ByteLevel/loranull_Tokenizer   Tokenizer::encode(whole text, no BOS): LLaMA 3's
//                                  layout (Split regex via PCRE2 JIT, ByteLevel, BPE
//                                  with ignore_merges)
//   ByteLevel/naive_reference      the same ids from the hand-written pattern scanner
//                                  and BPE by repeated scan over std::map ranks
//
// Counters: MB/s (bytes of text per second, one core), tokens/s. The
// tokenizer.json is built here: 8000 merges learnt from the text itself by
// a small BPE trainer (pair counts over the distinct pre-tokens, 40 merges
// per round of counting), so the vocabulary has realistic sizes and word
// lengths. Before timing, the two implementations must agree on every id.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include <loranull/text.hpp>

#include "corpus.hpp"  // examples/experiment: the Jargon File, gunzipped

namespace {

using nlohmann::json;
namespace text = loranull::text;

constexpr const char* llama3_pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

const std::string& jargon() {
    static const std::string t = text::utf8_lossy(experiment::read_maybe_gzipped(experiment::default_text_path()));
    return t;
}

/// A byte-level BPE vocabulary learnt from `corpus`: the merges (as byte-level
/// strings, in rank order) over 256 byte tokens.
struct TrainedBpe {
    std::vector<std::string> tokens;                       // by id: 256 bytes, then merges
    std::vector<std::pair<std::int32_t, std::int32_t>> merges;

    TrainedBpe(const std::string& corpus, std::size_t merge_count, std::size_t merges_per_round) {
        const text::ByteLevelTable& table = text::ByteLevelTable::get();
        for (int b = 0; b < 256; ++b) tokens.push_back(table.char_of_byte[b]);
        std::unordered_map<std::string, std::int64_t> counts;
        for (const std::string& piece : text::reference::scan_llama3_pattern(corpus)) ++counts[piece];
        std::vector<std::pair<std::vector<std::int32_t>, std::int64_t>> words;
        for (const auto& [piece, n] : counts) {
            std::vector<std::int32_t> w;
            for (const char c : piece) w.push_back(static_cast<unsigned char>(c));
            words.emplace_back(std::move(w), n);
        }
        while (merges.size() < merge_count) {
            std::map<std::pair<std::int32_t, std::int32_t>, std::int64_t> pairs;
            for (const auto& [w, n] : words)
                for (std::size_t k = 0; k + 1 < w.size(); ++k) pairs[{w[k], w[k + 1]}] += n;
            std::vector<std::pair<std::int64_t, std::pair<std::int32_t, std::int32_t>>> ranked;
            for (const auto& [p, n] : pairs) ranked.emplace_back(-n, p);
            if (ranked.empty()) break;
            std::sort(ranked.begin(), ranked.end());
            for (std::size_t r = 0; r < std::min(merges_per_round, ranked.size()) && merges.size() < merge_count; ++r)
                add_merge(ranked[r].second, words);
        }
    }

    json to_json() const {
        json vocab = json::object(), list = json::array();
        for (std::size_t id = 0; id < tokens.size(); ++id) vocab[tokens[id]] = id;
        for (const auto& [a, b] : merges) list.push_back(json::array({tokens[a], tokens[b]}));
        const json bos = {{"id", 128000}, {"content", "<|begin_of_text|>"}, {"single_word", false}, {"lstrip", false},
                          {"rstrip", false}, {"normalized", false}, {"special", true}};
        return {{"added_tokens", {bos}},
                {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", {
                    {{"type", "Split"}, {"pattern", {{"Regex", llama3_pattern}}}, {"behavior", "Isolated"}, {"invert", false}},
                    {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}},
                {"decoder", {{"type", "ByteLevel"}}},
                {"model", {{"type", "BPE"}, {"ignore_merges", true}, {"vocab", vocab}, {"merges", list}}}};
    }

private:
    void add_merge(std::pair<std::int32_t, std::int32_t> p, std::vector<std::pair<std::vector<std::int32_t>, std::int64_t>>& words) {
        const std::string merged = tokens[p.first] + tokens[p.second];
        if (std::find(tokens.begin(), tokens.end(), merged) != tokens.end()) return;  // reached another way already
        const auto id = static_cast<std::int32_t>(tokens.size());
        tokens.push_back(merged);
        merges.push_back(p);
        for (auto& [w, n] : words)
            for (std::size_t k = 0; k + 1 < w.size(); ++k)
                if (w[k] == p.first && w[k + 1] == p.second) w[k] = id, w.erase(w.begin() + static_cast<std::ptrdiff_t>(k) + 1);
    }
};

struct Setup {
    TrainedBpe bpe{jargon(), 8000, 40};
    text::Tokenizer tokenizer = text::Tokenizer::from_json_text(bpe.to_json().dump());
    std::map<std::pair<std::string, std::string>, std::size_t> rank;
    std::map<std::string, std::int32_t> vocab;

    Setup() {
        for (std::size_t r = 0; r < bpe.merges.size(); ++r)
            rank[{bpe.tokens[bpe.merges[r].first], bpe.tokens[bpe.merges[r].second]}] = r;
        for (std::size_t id = 0; id < bpe.tokens.size(); ++id) vocab[bpe.tokens[id]] = static_cast<std::int32_t>(id);
        if (naive_encode(jargon()) != tokenizer.encode(jargon(), false)) {
            std::fprintf(stderr, "bench_tokenizer: the tokenizer and the naive reference disagree on the Jargon File\n");
            std::exit(1);
        }
    }
    std::vector<std::int32_t> naive_encode(const std::string& s) const {
        std::vector<std::int32_t> ids;
        const text::ByteLevelTable& table = text::ByteLevelTable::get();
        for (const std::string& piece : text::reference::scan_llama3_pattern(s)) {
            const std::string chars = table.encode(piece);
            if (const auto whole = vocab.find(chars); whole != vocab.end()) {  // ignore_merges
                ids.push_back(whole->second);
                continue;
            }
            for (const std::string& t : text::reference::naive_bpe(text::reference::characters_of(chars), rank))
                ids.push_back(vocab.at(t));
        }
        return ids;
    }
};

const Setup& setup() {
    static const Setup s;
    return s;
}

void report(benchmark::State& state, std::size_t tokens) {
    const double bytes = static_cast<double>(jargon().size());
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * jargon().size()));
    state.counters["MB/s"] = benchmark::Counter(bytes / 1e6, benchmark::Counter::kIsIterationInvariantRate);
    state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsIterationInvariantRate);
    state.counters["vocab"] = static_cast<double>(setup().bpe.tokens.size());
}

void BM_loranull_Tokenizer(benchmark::State& state) {
    const Setup& s = setup();
    std::size_t tokens = 0;
    for (auto _ : state) {
        const auto ids = s.tokenizer.encode(jargon(), false);
        tokens = ids.size();
        benchmark::DoNotOptimize(ids.data());
    }
    report(state, tokens);
}

void BM_naive_reference(benchmark::State& state) {
    const Setup& s = setup();
    std::size_t tokens = 0;
    for (auto _ : state) {
        const auto ids = s.naive_encode(jargon());
        tokens = ids.size();
        benchmark::DoNotOptimize(ids.data());
    }
    report(state, tokens);
}

BENCHMARK(BM_loranull_Tokenizer)->Name("ByteLevel/loranull_Tokenizer")->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_naive_reference)->Name("ByteLevel/naive_reference")->Unit(benchmark::kMillisecond)->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
