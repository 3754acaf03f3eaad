#pragma once
// The experiment's data: what the model knows (real English text and a
// generated knowledge base of facts) and what it is fine-tuned to do
// (addition written as text). Byte-level: token = byte, vocabulary 256.
//
//   text    the Jargon File 4.4.7 (public domain; Debian's jargon-text,
//           /usr/share/doc/jargon-text/jargon.txt.gz), cleaned to ASCII with
//           runs of blanks collapsed; cut into 4096-byte chunks, every 20th
//           chunk held out (bits per byte are measured there, never trained on)
//   facts   "The <attribute> of <entity> is <value>." for generated entities,
//           regenerated from (seed, count) anywhere: pretraining teaches them,
//           closed-book accuracy measures how many survive fine-tuning
//   task    "a+b=c\n" for a, b in [0, 10^digits); a fixed set of pairs is held out
//
// Every sampler takes an explicit Rng, so runs are reproducible bit for bit.

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <loranull/backend/nn.hpp>
#include <loranull/core/error.hpp>
#include <loranull/core/random.hpp>

namespace experiment {

using loranull::Index;
using loranull::require;
using loranull::Rng;
using Tokens = std::vector<std::int32_t>;

/// Where Debian's jargon-text puts the Jargon File, or where
/// scripts/install-deps.sh unpacks it when dpkg skips /usr/share/doc.
inline std::string default_text_path() {
    const char* debian = "/usr/share/doc/jargon-text/jargon.txt.gz";
    const char* unpacked = "/usr/local/share/jargon-text/jargon.txt.gz";
    std::ifstream probe(debian);
    return probe ? debian : (std::ifstream(unpacked) ? unpacked : debian);
}

/// The bytes of a file, gunzipped when it starts with gzip's magic number.
inline std::string read_maybe_gzipped(const std::string& path) {
    gzFile file = gzopen(path.c_str(), "rb");
    require(file != nullptr, "read_text", "cannot open ", path,
            " (the Jargon File comes from Debian's jargon-text package: apt-get install jargon-text)");
    std::string out;
    std::array<char, 1 << 16> buffer{};
    for (;;) {
        const int n = gzread(file, buffer.data(), static_cast<unsigned>(buffer.size()));
        if (n < 0) {
            int code = 0;
            const std::string message = gzerror(file, &code);
            gzclose(file);
            loranull::fail("read_text", path, " is corrupt: ", message);
        }
        if (n == 0) break;
        out.append(buffer.data(), static_cast<std::size_t>(n));
    }
    gzclose(file);
    require(!out.empty(), "read_text", path, " is empty");
    return out;
}

/// ASCII only (box-drawing characters and accents dropped), tabs and runs of
/// spaces collapsed to one space, runs of blank lines to one blank line, and
/// no trailing spaces: the model spends its capacity on words, not layout.
inline std::string clean_text(const std::string& raw) {
    std::string out;
    out.reserve(raw.size());
    int newlines = 0;
    bool space = false;
    for (const unsigned char c : raw) {
        if (c >= 0x80 || c == '\r' || (c < 0x20 && c != '\n' && c != '\t')) continue;
        if (c == '\n') {
            space = false;
            if (++newlines <= 2) out.push_back('\n');
            continue;
        }
        if (c == ' ' || c == '\t') {
            space = true;
            continue;
        }
        if (space && newlines == 0 && !out.empty()) out.push_back(' ');
        space = false;
        newlines = 0;
        out.push_back(static_cast<char>(c));
    }
    return out;
}

inline Tokens to_tokens(const std::string& s) {
    Tokens t(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) t[i] = static_cast<unsigned char>(s[i]);
    return t;
}

/// The text, split into training and held-out bytes by 4096-byte chunks.
struct TextCorpus {
    std::string train, held_out;
    std::size_t raw_bytes = 0;

    static constexpr std::size_t chunk = 4096;
    static constexpr std::size_t held_out_every = 20;

    static TextCorpus load(const std::string& path) {
        TextCorpus corpus;
        const std::string raw = read_maybe_gzipped(path);
        corpus.raw_bytes = raw.size();
        const std::string text = clean_text(raw);
        require(text.size() >= 4 * chunk * held_out_every, "TextCorpus", path, " holds only ", text.size(),
                " bytes of text after cleaning; the experiment needs at least ", 4 * chunk * held_out_every);
        for (std::size_t begin = 0, i = 0; begin < text.size(); begin += chunk, ++i)
            (i % held_out_every == held_out_every - 1 ? corpus.held_out : corpus.train) += text.substr(begin, chunk);
        return corpus;
    }
};

/// One fact: prompt "The colour of Tavoren is", answer " red.".
struct Fact {
    std::string entity, attribute, value;
    std::string prompt() const { return "The " + attribute + " of " + entity + " is"; }
    std::string answer() const { return " " + value + "."; }
    std::string sentence() const { return prompt() + answer(); }
};

/// A generated knowledge base: `entities` made-up names, each with
/// `attributes_per_entity` attributes drawn from a fixed list, values uniform
/// over each attribute's small set (chance accuracy 1/8 to 1/12).
inline std::vector<Fact> make_facts(std::uint64_t seed, Index entities, Index attributes_per_entity = 2) {
    require(entities >= 1 && attributes_per_entity >= 1 && attributes_per_entity <= 4, "make_facts", entities,
            " entities with ", attributes_per_entity, " attributes each (need >= 1 entity, 1 .. 4 attributes)");
    struct Attribute {
        const char* name;
        std::vector<const char*> values;
    };
    const std::vector<Attribute> attributes = {
        {"colour", {"red", "blue", "green", "yellow", "black", "white", "orange", "purple"}},
        {"city", {"Paris", "London", "Tokyo", "Cairo", "Lima", "Oslo", "Delhi", "Rome", "Berlin", "Madrid", "Boston",
                  "Sydney"}},
        {"animal", {"cat", "dog", "horse", "owl", "fox", "bear", "wolf", "otter", "eagle", "snake"}},
        {"metal", {"iron", "gold", "silver", "copper", "tin", "lead", "zinc", "nickel"}},
    };
    static constexpr std::array<const char*, 16> onsets = {"b", "d", "f", "g", "k", "l", "m", "n",
                                                          "p", "r", "s", "t", "v", "z", "th", "br"};
    static constexpr std::array<const char*, 6> vowels = {"a", "e", "i", "o", "u", "ai"};
    static constexpr std::array<const char*, 6> codas = {"", "n", "r", "l", "s", "th"};
    Rng rng(seed);
    auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng.next_u64() % n); };
    std::vector<std::string> names;
    while (static_cast<Index>(names.size()) < entities) {
        std::string name;
        const std::size_t syllables = 2 + pick(2);
        for (std::size_t s = 0; s < syllables; ++s)
            name += std::string(onsets[pick(onsets.size())]) + vowels[pick(vowels.size())] + codas[pick(codas.size())];
        name[0] = static_cast<char>(name[0] - 'a' + 'A');
        if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
    }
    std::vector<Fact> facts;
    for (const std::string& name : names) {
        std::vector<std::size_t> order(attributes.size());
        for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
        for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[pick(i)]);
        for (Index a = 0; a < attributes_per_entity; ++a) {
            const Attribute& attribute = attributes[order[static_cast<std::size_t>(a)]];
            facts.push_back({name, attribute.name, attribute.values[pick(attribute.values.size())]});
        }
    }
    return facts;
}

/// One addition problem with fixed-width operands: for 2 digits, prompt
/// "07+85=", answer "092\n" (the sum has one digit more). Fixed columns put
/// every digit at the same distance from the digits it depends on, which is
/// what lets a small model learn the carries in a few hundred steps.
struct Problem {
    int a = 0, b = 0, digits = 2;
    static std::string padded(int value, int width) {
        std::string s = std::to_string(value);
        return std::string(static_cast<std::size_t>(std::max(0, width - static_cast<int>(s.size()))), '0') + s;
    }
    std::string prompt() const { return padded(a, digits) + "+" + padded(b, digits) + "="; }
    std::string answer() const { return padded(a + b, digits + 1) + "\n"; }
    std::string text() const { return prompt() + answer(); }
};

/// Every pair a, b < 10^digits, shuffled by `seed`; the first `held_out` are
/// the evaluation set, never trained on.
struct AdditionTask {
    std::vector<Problem> train, held_out;

    static AdditionTask make(int digits, Index held_out_count, std::uint64_t seed) {
        require(digits >= 1 && digits <= 3, "AdditionTask", "digits = ", digits, " (need 1 .. 3)");
        int limit = 1;
        for (int d = 0; d < digits; ++d) limit *= 10;
        std::vector<Problem> all;
        for (int a = 0; a < limit; ++a)
            for (int b = 0; b < limit; ++b) all.push_back({a, b, digits});
        require(held_out_count >= 1 && held_out_count * 2 <= static_cast<Index>(all.size()), "AdditionTask",
                "held-out count ", held_out_count, " for ", all.size(), " problems");
        Rng rng(seed);
        for (std::size_t i = all.size(); i > 1; --i) std::swap(all[i - 1], all[rng.next_u64() % i]);
        AdditionTask task;
        task.held_out.assign(all.begin(), all.begin() + held_out_count);
        task.train.assign(all.begin() + held_out_count, all.end());
        return task;
    }
};

/// A batch of `batch` sequences of `seq_len` tokens and their next-token
/// targets, laid side by side (what LlamaModel::loss takes).
struct Batch {
    Tokens tokens, targets;
};

/// Fills a sequence of seq_len + 1 bytes from a generator of strings.
template <class Next>
std::string fill_window(Index seq_len, Next&& next) {
    std::string window;
    while (static_cast<Index>(window.size()) < seq_len + 1) window += next();
    window.resize(static_cast<std::size_t>(seq_len + 1));
    return window;
}

inline void append_window(Batch& batch, const std::string& window) {
    for (std::size_t i = 0; i + 1 < window.size(); ++i) {
        batch.tokens.push_back(static_cast<unsigned char>(window[i]));
        batch.targets.push_back(static_cast<unsigned char>(window[i + 1]));
    }
}

/// A random window of the text.
inline std::string text_window(const std::string& text, Index seq_len, Rng& rng) {
    const std::size_t span = static_cast<std::size_t>(seq_len + 1);
    require(text.size() > span, "text_window", "text of ", text.size(), " bytes for windows of ", span);
    return text.substr(rng.next_u64() % (text.size() - span), span);
}

/// Random facts, one after another, separated by spaces.
inline std::string fact_window(const std::vector<Fact>& facts, Index seq_len, Rng& rng) {
    bool first = true;
    return fill_window(seq_len, [&] {
        std::string s(first ? 0 : 1, ' ');
        s += facts[rng.next_u64() % facts.size()].sentence();
        first = false;
        return s;
    });
}

/// Random training problems, one per line. The targets score only the
/// answers (supervised fine-tuning): predicting the random operands teaches
/// nothing, and their gradient would only add noise.
inline void append_problem_window(Batch& batch, const std::vector<Problem>& problems, Index seq_len, Rng& rng) {
    std::string window;
    std::vector<bool> answer;
    while (static_cast<Index>(window.size()) < seq_len + 1) {
        const Problem& p = problems[rng.next_u64() % problems.size()];
        window += p.prompt();
        answer.resize(window.size(), false);
        window += p.answer();
        answer.resize(window.size(), true);
    }
    for (Index i = 0; i < seq_len; ++i) {
        const std::size_t at = static_cast<std::size_t>(i);
        batch.tokens.push_back(static_cast<unsigned char>(window[at]));
        batch.targets.push_back(answer[at + 1] ? static_cast<unsigned char>(window[at + 1]) : loranull::ignore_target);
    }
}

/// Pretraining and calibration data: each sequence is text with probability
/// 1 - fact_fraction, else facts.
inline Batch knowledge_batch(const TextCorpus& corpus, const std::vector<Fact>& facts, Index batch, Index seq_len,
                             double fact_fraction, Rng& rng) {
    Batch out;
    for (Index s = 0; s < batch; ++s) {
        const bool fact = rng.uniform() < fact_fraction;
        append_window(out, fact ? fact_window(facts, seq_len, rng) : text_window(corpus.train, seq_len, rng));
    }
    return out;
}

inline Batch task_batch(const AdditionTask& task, Index batch, Index seq_len, Rng& rng) {
    Batch out;
    for (Index s = 0; s < batch; ++s) append_problem_window(out, task.train, seq_len, rng);
    return out;
}

/// The held-out text as consecutive windows (the same ones every time).
inline std::vector<Batch> held_out_text_batches(const TextCorpus& corpus, Index windows, Index seq_len, Index batch) {
    std::vector<Batch> out;
    const std::size_t span = static_cast<std::size_t>(seq_len + 1);
    const std::size_t available = corpus.held_out.size() / span;
    require(available >= 1, "held_out_text_batches", "held-out text of ", corpus.held_out.size(), " bytes");
    const std::size_t count = std::min<std::size_t>(static_cast<std::size_t>(windows), available);
    const std::size_t stride = available / count;
    for (std::size_t w = 0; w < count; ++w) {
        if (w % static_cast<std::size_t>(batch) == 0) out.emplace_back();
        append_window(out.back(), corpus.held_out.substr(w * stride * span, span));
    }
    return out;
}

}  // namespace experiment
