#!/bin/sh
# A training step of loranull-finetune against the same step in PyTorch, in one
# sitting on one machine (docs/benchmarks.md, "Fine-tuning a checkpoint"):
#
#   checkpoint   the random 112.7M-parameter LLaMA of bench_build.sh (dim 1024,
#                4 blocks, 16 / 8 heads, intermediate 2816, vocab 32000, BF16)
#   adapter      loranull-build --method lora-null-v2 --rank 128 on all 28 projections
#   step         4 sequences of 512 tokens, B trains (A frozen), AdamW, clipping at 1
#
# 1. loranull-finetune --steps 4 on text packed into 512-token windows (a
#    byte-level tokenizer.json written here: the checkpoint has none); the
#    step time is the fastest of steps 2-4 in loss.csv (step 1 first-touches
#    every buffer);
# 2. bench/pytorch_finetune.py: the same residual model and adapter, the same
#    batch shape, eager float32, the fastest of 3 steps after a warm-up.
# Minutes on 2 cores; not run by CI.
#
#   [DEVICE=cuda] [PEER=0] bench/bench_finetune.sh [BUILD_DIR] [WORK_DIR]
#
# DEVICE=cuda builds and trains with --device cuda (scripts/gpu-check.sh);
# PEER=0 skips the PyTorch peer (a CPU peer: the GPU check has no use for it).
set -eu
build=${1:-build}
work=${2:-/tmp/loranull_bench_build}
python=python3
python3 -c "import numpy" 2>/dev/null || python=/usr/bin/python3
here=$(dirname "$0")
batch=4 seq=512 rank=128
mkdir -p "$work"
if [ ! -f "$work/llama-113m/config.json" ]; then
  "$python" "$here/make_llama_checkpoint.py" "$work/llama-113m" --dim 1024 --layers 4 --heads 16 --kv-heads 8 \
    --hidden 2816 --vocab 32000 --dtype bf16 --shards 2 \
    --calib "$work/calib-32x512.safetensors" --samples 32 --seq-len 512
fi
built="$work/finetune-built"
if [ ! -f "$built/report.json" ]; then
  "$build/tools/loranull-build" --model "$work/llama-113m" --calib "$work/calib-32x512.safetensors" \
    --method lora-null-v2 --rank $rank --device "${DEVICE:-cpu}" --out "$built" > /dev/null
fi
# A byte-level BPE tokenizer without merges (ids 0-255, BOS 256, EOS 257) and
# some text to train on: the repository's docs, a few thousand windows.
"$python" - "$built/model" <<'PY'
import json, sys
d = sys.argv[1]
bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
vocab = {chr(c): b for b, c in zip(bs, cs)}
added = [{"id": 256, "content": "<s>", "special": True, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False},
         {"id": 257, "content": "</s>", "special": True, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False}]
tok = {"version": "1.0", "added_tokens": added, "normalizer": None,
       "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
       "post_processor": None, "decoder": {"type": "ByteLevel"},
       "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                 "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                 "vocab": vocab, "merges": []}}
json.dump(tok, open(d + "/tokenizer.json", "w"))
json.dump({"bos_token": "<s>", "eos_token": "</s>"}, open(d + "/tokenizer_config.json", "w"))
PY
cat "$here"/../docs/*.md "$here"/../README.md > "$work/finetune-text.txt"
out="$work/finetune-run"
rm -rf "$out"
"$build/tools/loranull-finetune" --model "$built/model" --adapter "$built/adapter" --data "$work/finetune-text.txt" \
  --steps 4 --batch $batch --seq-len $seq --save-every 0 --device "${DEVICE:-cpu}" --out "$out" > /dev/null
ours=$(awk -F, 'NR > 2 { s = $6; if (best == "" || s < best) best = s } END { print best }' "$out/loss.csv")
tokens=$(awk -F, 'NR == 3 { print $5 }' "$out/loss.csv")
ours_mib=$("$python" -c "import json; print(round(json.load(open('$out/finetune.json'))['peak_memory_bytes'] / 2**20))")
echo "step: $batch x $seq tokens, LoRA-Null v2 rank $rank (B trains), --device ${DEVICE:-cpu}, $(nproc) threads"
printf "%-22s %10s %12s %10s\n" "" "step (s)" "tokens/s" "peak MiB"
awk -v t="$tokens" -v a="$ours" -v am="$ours_mib" 'BEGIN { printf "%-22s %10.3f %12.0f %10s\n", "loranull-finetune", a, t / a, am }'
[ "${PEER:-1}" = 1 ] || exit 0
peer=$(/usr/bin/python3 "$here/pytorch_finetune.py" "$built/model" "$built/adapter" --batch $batch --seq $seq --threads "$(nproc)")
peer_s=$(echo "$peer" | awk '$1 == "step_seconds" { print $2 }')
peer_mib=$(echo "$peer" | awk '$1 == "peak_mib" { print $2 }')
awk -v t="$tokens" -v a="$ours" -v b="$peer_s" -v bm="$peer_mib" 'BEGIN {
  printf "%-22s %10.3f %12.0f %10s\n", "PyTorch (eager fp32)", b, t / b, bm
  printf "ratio (PyTorch / ours): %.2fx\n", b / a }'
