#!/usr/bin/env bash
# End-to-end checks of `g4moe train`: learning happens, checkpoints are HF directories g4moe can score,
# SIGINT saves and exits 130, --resume reproduces an uninterrupted run bit for bit, bad data and a diverging
# loss stop with one clear line and exit 2 while the last good checkpoint stays, and so does a save that fails
# on a full disk.
# Usage: train_test.sh path/to/g4moe   (run from the repository root)
set -u
g4moe="$1"
source "$(dirname "$0")/lib.sh"

head -n 400 data/tiny_corpus.jsonl >"$scratch/corpus.jsonl"
small=(--config recipes/tiny_moe.yaml "data.path=$scratch/corpus.jsonl" data.seq_len=64 train.batch_size=2
       train.eval_every=0 train.log_every=1 sample.tokens=0 train.warmup_steps=2)

# 1. An uninterrupted run of 24 steps; the loss falls; the checkpoint scores like the trained model.
OMP_NUM_THREADS=2 "$g4moe" train "${small[@]}" train.steps=120 output.dir="$scratch/full" >"$scratch/full.out" 2>&1 \
  && pass "train runs" || bad "train runs ($(tail -2 "$scratch/full.out"))"
python3 - "$scratch/full/metrics.jsonl" <<'PY' && pass "loss falls" || bad "loss falls"
import json, sys
losses = [json.loads(l)["loss"] for l in open(sys.argv[1]) if '"loss"' in l]
assert len(losses) == 120, len(losses)
assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4, losses
PY
ck="$scratch/full/checkpoint-120"
for f in config.json model.safetensors optimizer.safetensors trainer_state.json g4moe_tokenizer.json; do
  [ -f "$ck/$f" ] || bad "checkpoint has $f"
done
[ -f "$scratch/full/loss.png" ] && head -c 8 "$scratch/full/loss.png" | grep -q PNG && pass "loss.png written" \
  || bad "loss.png written"
"$g4moe" inspect "$ck" >/dev/null && pass "checkpoint is a valid HF checkpoint" || bad "checkpoint inspect"
echo '{"input_ids": [[2, 119, 107, 104, 35, 118, 112, 100, 111, 111]]}' >"$scratch/in.json"
"$g4moe" score --model "$ck" --input "$scratch/in.json" >/dev/null && pass "checkpoint scores" || bad "checkpoint scores"

# 2. Interrupt a run with SIGINT: it saves and exits 130; resuming gives the same losses bit for bit.
OMP_NUM_THREADS=2 "$g4moe" train "${small[@]}" train.steps=120 output.dir="$scratch/cut" >"$scratch/cut.out" 2>&1 &
stop_after_lines $! "$scratch/cut/metrics.jsonl" 6 INT
rc=$?
resume=$(ls -d "$scratch"/cut/checkpoint-* 2>/dev/null | head -1)
if [ "$rc" -eq 130 ] && [ -n "$resume" ]; then pass "SIGINT saves and exits 130"; else bad "SIGINT (rc=$rc)"; fi
if [ -n "$resume" ]; then
  OMP_NUM_THREADS=2 "$g4moe" train "${small[@]}" train.steps=120 output.dir="$scratch/cut" --resume "$resume" \
    >"$scratch/resume.out" 2>&1 || bad "resume runs ($(tail -2 "$scratch/resume.out"))"
  python3 - "$scratch/full/metrics.jsonl" "$scratch/cut/metrics.jsonl" <<'PY' && pass "resume is bit-exact" || bad "resume is bit-exact"
import json, sys
def losses(p):
    return {j["step"]: j["loss"] for j in map(json.loads, open(p)) if "loss" in j}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
assert sorted(b) == list(range(1, 121)), sorted(b)
for s in a:
    assert a[s] == b[s], (s, a[s], b[s])   # exact equality, not a tolerance
PY
fi

# 3. Bad input: one line, exit 2.
{ head -n 5 "$scratch/corpus.jsonl"; echo '{"text": 12}'; } >"$scratch/bad.jsonl"
expect_final_error "malformed data line names the line" "bad.jsonl:6" \
  "$g4moe" train "${small[@]}" "data.path=$scratch/bad.jsonl" output.dir="$scratch/x"
: >"$scratch/empty.jsonl"
expect_final_error "empty dataset" "empty dataset" "$g4moe" train "${small[@]}" "data.path=$scratch/empty.jsonl" output.dir="$scratch/x"
expect_final_error "too long without truncation" "more than data.seq_len" \
  "$g4moe" train "${small[@]}" data.truncate=false data.seq_len=16 output.dir="$scratch/x"
expect_final_error "unknown recipe key" 'unknown recipe key "train.stpes"' "$g4moe" train "${small[@]}" train.stpes=3
# Recipes that used to be silent surprises: each is one line, exit 2, before any work.
printf 'train: 5\n' >"$scratch/scalar.yaml"
expect_final_error "a section given a scalar" '"train" must be a mapping' \
  "$g4moe" train --config "$scratch/scalar.yaml" "data.path=$scratch/corpus.jsonl" output.dir="$scratch/x"
printf -- '- 1\n- 2\n' >"$scratch/list.yaml"
expect_final_error "a top-level list" "must be a mapping of sections" \
  "$g4moe" train --config "$scratch/list.yaml" output.dir="$scratch/x"
expect_final_error "beta1 outside [0, 1)" "train.beta1" "$g4moe" train "${small[@]}" train.beta1=1.5 output.dir="$scratch/x"
expect_final_error "a negative eps" "train.eps" "$g4moe" train "${small[@]}" train.eps=-1e-8 output.dir="$scratch/x"
expect_final_error "a negative max_grad_norm" "train.max_grad_norm" \
  "$g4moe" train "${small[@]}" train.max_grad_norm=-1 output.dir="$scratch/x"
expect_final_error "a freeze pattern that matches nothing" 'train.freeze pattern "embed_tokenz" matches no parameter' \
  "$g4moe" train "${small[@]}" 'train.freeze=["embed_tokenz"]' output.dir="$scratch/x"
printf '%s\n' '{"messages": [{"role": "user", "content": "hello there"}]}' \
  '{"messages": [{"role": "user", "content": "anyone?"}]}' >"$scratch/user_only.jsonl"
expect_final_error "data with no training target" "counts in the loss" \
  "$g4moe" train "${small[@]}" "data.path=$scratch/user_only.jsonl" data.eval_fraction=0 output.dir="$scratch/x"
python3 -c "
print('a0: &a0 [x, x, x, x, x, x, x, x, x, x]')
for i in range(1, 10): print(f'a{i}: &a{i} [' + ', '.join([f'*a{i-1}'] * 10) + ']')
" >"$scratch/bomb.yaml"
expect_final_error "a YAML alias bomb is bounded" "nodes" \
  timeout 60 "$g4moe" train --config "$scratch/bomb.yaml" output.dir="$scratch/x"
expect_final_error "an unknown key suggests the right one" 'did you mean "data.seq_len"' \
  "$g4moe" train "${small[@]}" train.seq_len=32 output.dir="$scratch/x"
[ -e "$scratch/x" ] && bad "refused recipes wrote nothing" || pass "refused recipes wrote nothing"
OMP_NUM_THREADS=2 "$g4moe" train "${small[@]}" train.max_steps=2 train.learning_rate=1e-3 \
  train.gradient_accumulation_steps=1 train.warmup_steps=0 train.warmup_ratio=0.5 output.dir="$scratch/alias" >/dev/null 2>&1 &&
  [ "$(grep -c '"loss"' "$scratch/alias/metrics.jsonl")" -eq 2 ] && pass "HF Trainer key names work as aliases" ||
  bad "HF Trainer key names"
expect_final_error "diverging loss stops" "training stopped" \
  "$g4moe" train "${small[@]}" train.steps=30 train.lr=1e30 train.max_grad_norm=0 output.save_every=1 \
  output.dir="$scratch/nan"
ls -d "$scratch"/nan/checkpoint-* >/dev/null 2>&1 && pass "last good checkpoint kept" || bad "last good checkpoint kept"
ls -d "$scratch"/nan/.*tmp-* >/dev/null 2>&1 && bad "no half-written checkpoint" || pass "no half-written checkpoint"

# 4. A full disk while saving (simulated with a file-size limit: writes past it fail with EFBIG, SIGXFSZ ignored):
# one clear line, exit 2, no half-written checkpoint, and the earlier checkpoint still resumes.
OMP_NUM_THREADS=2 "$g4moe" train "${small[@]}" train.steps=2 output.dir="$scratch/disk" >/dev/null 2>&1 \
  || bad "first save before the full disk"
expect_final_error "a failed save (disk full) is one clear line" "File too large" \
  bash -c 'trap "" XFSZ; ulimit -f 1000; exec "$@"' _ "$g4moe" train "${small[@]}" train.steps=4 \
  output.dir="$scratch/disk" --resume "$scratch/disk/checkpoint-2"
[ -d "$scratch/disk/checkpoint-4" ] && bad "no checkpoint from the failed save" || pass "no checkpoint from the failed save"
ls -d "$scratch"/disk/.*tmp-* >/dev/null 2>&1 && bad "no half-written checkpoint after a full disk" \
  || pass "no half-written checkpoint after a full disk"
OMP_NUM_THREADS=2 "$g4moe" train "${small[@]}" train.steps=4 output.dir="$scratch/disk" \
  --resume "$scratch/disk/checkpoint-2" >/dev/null 2>&1 && [ -f "$scratch/disk/checkpoint-4/model.safetensors" ] \
  && pass "the earlier checkpoint resumes after the failed save" || bad "resume after the failed save"

finish train_test
