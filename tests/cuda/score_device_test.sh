#!/usr/bin/env bash
# score_device_test.sh: the whole model on the GPU through the op interface, against transformers' float64
# reference (tests/cuda/compare_to_reference.py does the arithmetic).
# - f32 (`--dtype f32`), the fixtures without MoE blocks (the MoE block is bf16-only on the GPU):
#   `score --grads --device cuda` within the CPU fixture tests' bounds of float64 (relative Frobenius: logits
#   1e-5, every gradient 1e-4, loss 1e-5); the CPU run's distance is printed beside it. A MoE fixture in f32 on
#   cuda must fail with a one-line error naming the op.
# - bf16 (the GPU default), every model fixture: logits, loss and every gradient no further from float64 than
#   transformers' own bf16 run (tools/bf16_reference.py: eager attention, eager experts, on this GPU) is, per
#   tensor, times BF16_RATIO_BOUND below.
# Skips (exit 0, saying so) without a GPU. Usage (GPU machine): tests/cuda/score_device_test.sh G4MOE_BINARY
set -u
g4moe=${1:-build/g4moe}
BF16_RATIO_BOUND=${BF16_RATIO_BOUND:-1.0}
cd "$(dirname "$0")/../.."
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "score_device_test: SKIPPED (no GPU on this machine)"
  exit 0
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failures=0
compare=tests/cuda/compare_to_reference.py

for f in dense_e2b dense_31b; do
  d=tests/fixtures/$f
  "$g4moe" score --model "$d" --input "$d/input.json" --grads --output "$scratch/$f.cpu.safetensors" \
    >"$scratch/$f.cpu.json" || { echo "FAIL $f: cpu score"; failures=$((failures + 1)); continue; }
  "$g4moe" score --model "$d" --input "$d/input.json" --grads --output "$scratch/$f.f32.safetensors" \
    --device cuda --dtype f32 >"$scratch/$f.f32.json" || { echo "FAIL $f: cuda f32 score"; failures=$((failures + 1)); continue; }
  python3 "$compare" f32 "$f" "$d/expected.safetensors" "$scratch/$f.f32.safetensors" "$scratch/$f.f32.json" \
    "$scratch/$f.cpu.safetensors" || failures=$((failures + 1))
done
d=tests/fixtures/moe_26b
if "$g4moe" score --model "$d" --input "$d/input.json" --device cuda --dtype f32 >/dev/null 2>"$scratch/moe.err"; then
  echo "FAIL moe_26b: scored in f32 on cuda although the MoE block is bf16-only there"; failures=$((failures + 1))
elif grep -q "op moe_block on cuda takes bf16" "$scratch/moe.err" && [ "$(wc -l <"$scratch/moe.err")" -eq 1 ]; then
  echo "ok   moe_26b f32 on cuda: $(cat "$scratch/moe.err")"
else
  echo "FAIL moe_26b f32: unexpected error: $(head -c 300 "$scratch/moe.err")"; failures=$((failures + 1))
fi

fixtures="dense_e2b dense_31b moe_26b moe_packed moe_padding released_layout bf16_checkpoint"
if ! python3 tools/bf16_reference.py --out "$scratch/hf" $(for f in $fixtures; do echo tests/fixtures/$f; done) \
  >"$scratch/hf.jsonl" 2>"$scratch/hf.err"; then
  echo "FAIL: transformers' bf16 reference run: $(tail -c 400 "$scratch/hf.err")"
  exit 1
fi
for f in $fixtures; do
  d=tests/fixtures/$f
  "$g4moe" score --model "$d" --input "$d/input.json" --grads --output "$scratch/$f.bf16.safetensors" \
    --device cuda --dtype bf16 >"$scratch/$f.bf16.json" || { echo "FAIL $f: cuda bf16 score"; failures=$((failures + 1)); continue; }
  hf_loss=$(python3 -c "import json,sys; print(next(json.loads(l)['loss'] for l in open(sys.argv[1]) if json.loads(l)['case'] == sys.argv[2]))" "$scratch/hf.jsonl" "$f")
  python3 "$compare" bf16 "$f" "$d/expected.safetensors" "$scratch/$f.bf16.safetensors" "$scratch/$f.bf16.json" \
    "$scratch/hf/$f.safetensors" "$hf_loss" "$BF16_RATIO_BOUND" || failures=$((failures + 1))
done
echo "score_device_test: $failures failure(s)"
exit $((failures > 0))
