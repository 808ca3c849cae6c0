#!/usr/bin/env bash
# train_device_test.sh: `g4moe train` on the GPU (train.device cuda, bf16 compute, f32 masters): the loss falls
# and stays finite; the checkpoint is an ordinary HF directory that the CPU scores; a run resumed on the GPU from
# a GPU checkpoint, and one resumed on the CPU, both continue (checkpoints resume on either device).
# Skips (exit 0, saying so) without a GPU. Usage (GPU machine): tests/cuda/train_device_test.sh G4MOE_BINARY
set -u
g4moe=${1:-build/g4moe}
cd "$(dirname "$0")/../.."
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "train_device_test: SKIPPED (no GPU on this machine)"
  exit 0
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failures=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; failures=$((failures + 1)); }
head -n 400 data/tiny_corpus.jsonl >"$scratch/corpus.jsonl"
small=(--config recipes/tiny_moe.yaml "data.path=$scratch/corpus.jsonl" data.seq_len=64 train.batch_size=2
       train.eval_every=20 train.log_every=1 sample.tokens=8 train.warmup_steps=2)

"$g4moe" train "${small[@]}" device=cuda train.steps=60 output.save_every=30 output.dir="$scratch/gpu" \
  >"$scratch/gpu.out" 2>&1 && ok "train on cuda runs" || bad "train on cuda runs: $(tail -3 "$scratch/gpu.out")"
python3 - "$scratch/gpu/metrics.jsonl" <<'PY' && ok "loss falls on cuda (bf16)" || bad "loss falls on cuda (bf16)"
import json, math, sys
losses = [json.loads(l)["loss"] for l in open(sys.argv[1]) if '"loss"' in l]
assert len(losses) == 60 and all(math.isfinite(x) for x in losses), losses
assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4, losses
print(f"     first 4 steps {sum(losses[:4]) / 4:.4f}, last 4 {sum(losses[-4:]) / 4:.4f}")
PY
ck="$scratch/gpu/checkpoint-60"
"$g4moe" inspect "$ck" >/dev/null && ok "GPU checkpoint is a valid HF checkpoint" || bad "GPU checkpoint inspect"
printf '{"input_ids": [[2, 72, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100]]}\n' >"$scratch/in.json"
"$g4moe" score --model "$ck" --input "$scratch/in.json" >"$scratch/score.json" && ok "the CPU scores the GPU checkpoint" \
  || bad "the CPU scores the GPU checkpoint"
"$g4moe" train "${small[@]}" device=cuda train.steps=60 output.dir="$scratch/gpu" --resume "$scratch/gpu/checkpoint-30" \
  >"$scratch/resume_gpu.out" 2>&1 && ok "resume on cuda from a cuda checkpoint" \
  || bad "resume on cuda: $(tail -3 "$scratch/resume_gpu.out")"
"$g4moe" train "${small[@]}" train.steps=60 output.dir="$scratch/cpu" --resume "$scratch/gpu/checkpoint-30" \
  >"$scratch/resume_cpu.out" 2>&1 && ok "resume on the CPU from a cuda checkpoint" \
  || bad "resume on the CPU: $(tail -3 "$scratch/resume_cpu.out")"
echo "train_device_test: $failures failure(s)"
exit $((failures > 0))
