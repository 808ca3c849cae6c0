#!/usr/bin/env bash
# gpu_checks.sh: everything that needs the GPU machine, in order of importance, each step under a time limit, so
# that one call of the run tool (device time is scarce) gives the whole picture. Run there from the repository
# root with the bundle of scripts/gpu_bundle.sh carried (`G4_BUNDLE_XZ=1 bash scripts/gpu_bundle.sh` here):
#   bash scripts/gpu_checks.sh            correctness: CUDA tests (parity in f32 and bf16, flash attention, the
#                                         MoE layer), the whole model against float64 and transformers' bf16
#                                         (one batch per tensor, then over 12 batches per fixture),
#                                         training on the GPU, bf16 greedy generation against transformers' own
#   bash scripts/gpu_checks.sh --bench    then the benchmarks of docs/BENCHMARKS.md with their same-call peers
# Logs go to $OUT (the run tool's output folder) when it is set, else to gpu-checks/. G4_CHECKS_SECONDS=N bounds the
# whole run (the run tool's per-call limit): each step's limit shrinks to what is left, and a step with under 20 s
# left is skipped, saying so. G4_CHECKS_FROM=NAME starts at step NAME (a later call picks up where one ended).
set -u
cd "$(dirname "$0")/.."
out=${OUT:-gpu-checks}
mkdir -p "$out" .devbin/x
[ -d .devbin/x/lib ] || tar xJf .devbin/lib.tar.xz -C .devbin/x
export LD_LIBRARY_PATH=$PWD/.devbin/x/lib:${LD_LIBRARY_PATH:-}
nvidia-smi -L
total=${G4_CHECKS_SECONDS:-100000}
from=${G4_CHECKS_FROM:-}
step() {  # step NAME SECONDS CMD...: runs CMD under a limit, log in $out/NAME.log, a summary line here
  local name=$1 limit=$2
  shift 2
  if [ -n "$from" ] && [ "$name" != "$from" ]; then
    echo "== $name: not run (starting at $from)"
    return
  fi
  from=""
  local left=$((total - SECONDS - 10))
  if [ "$left" -lt 20 ]; then
    echo "== $name: SKIPPED (no time left in G4_CHECKS_SECONDS=$total)"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local start=$SECONDS
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  echo "== $name: rc $rc in $((SECONDS - start)) s"
  tail -n 12 "$out/$name.log"
}
step cuda_tests 150 .devbin/g4_cuda_tests --gtest_brief=1
step score_device 200 bash tests/cuda/score_device_test.sh .devbin/g4moe
step bf16_batches 240 python3 tests/cuda/bf16_batches_test.py .devbin/g4moe 12
step train_device 120 bash tests/cuda/train_device_test.sh .devbin/g4moe
step generate_device 120 python3 tests/cuda/generate_device_test.py .devbin/g4moe
[ "${1:-}" = "--bench" ] || exit 0
step flash_g4moe 60 .devbin/g4_bench_flash --seq 4096,16384
step flash_sdpa 120 python3 bench/flash_attention_torch.py --seq 4096,16384
step train6_g4moe 240 .devbin/g4moe bench train --preset gemma-4-26b-a4b --layers 6 --seq 4096 --device cuda \
  --no-optimizer --repeat 3
step train6_transformers 300 python3 bench/model_vs_transformers.py train --layers 6 --seq 4096 --repeat 3
step prefill30_g4moe 240 .devbin/g4moe bench forward --preset gemma-4-26b-a4b --seq 8192 --device cuda --repeat 3
step prefill30_transformers 300 python3 bench/model_vs_transformers.py forward --layers 30 --seq 8192 --repeat 3
