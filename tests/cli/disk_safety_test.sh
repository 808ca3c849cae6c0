#!/usr/bin/env bash
# What g4moe reads from and writes to disk, as a careless user or an attacker would try it: existing outputs
# are never replaced without --overwrite (init, train, score) and never the model's own files; resume files
# that do not fit the model or the recipe are refused with one line; SIGTERM saves like Ctrl-C; NaN/Inf
# weights and a diverging run stop with one line naming what is usable; save_total_limit removes only this
# run's checkpoints; a bf16 model is fine-tuned into bf16 checkpoints with fp32 master weights.
# Usage: disk_safety_test.sh path/to/g4moe   (run from the repository root)
set -u
g4moe="$1"
source "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=2

head -n 200 data/tiny_corpus.jsonl >"$scratch/corpus.jsonl"
small=(--config recipes/tiny_moe.yaml "data.path=$scratch/corpus.jsonl" data.seq_len=64 train.batch_size=2
       train.eval_every=0 train.log_every=1 sample.tokens=0 train.warmup_steps=0)
echo '{"input_ids": [[2, 119, 107, 104, 35, 118, 112, 100, 111, 111]]}' >"$scratch/in.json"
same_file() { cmp -s "$1" "$2"; }

# 1. init never replaces what is there, unless --overwrite.
mkdir -p "$scratch/mine" && echo "precious" >"$scratch/mine/notes.txt" && echo "precious" >"$scratch/file"
expect_error "init refuses a non-empty directory" "already exists and holds 1 entry" \
  "$g4moe" init --preset tiny-moe --out "$scratch/mine"
[ "$(cat "$scratch/mine/notes.txt")" = precious ] && pass "init left the directory alone" || bad "init kept notes.txt"
expect_error "init refuses a file" "already exists (a file)" "$g4moe" init --preset tiny-moe --out "$scratch/file"
[ "$(cat "$scratch/file")" = precious ] && pass "init left the file alone" || bad "init kept the file"
mkdir -p "$scratch/empty"
"$g4moe" init --preset tiny-moe --out "$scratch/empty" >/dev/null && [ -f "$scratch/empty/model.safetensors" ] &&
  pass "init writes into an empty directory" || bad "init into an empty directory"
"$g4moe" init --preset tiny-moe --out "$scratch/mine" --overwrite >/dev/null && [ ! -e "$scratch/mine/notes.txt" ] &&
  [ -f "$scratch/mine/model.safetensors" ] && pass "init --overwrite replaces" || bad "init --overwrite"
ls -a "$scratch" | grep -q 'tmp-' && bad "no temporary left beside the outputs" || pass "no temporary left beside the outputs"

# 2. train never replaces an earlier run, unless --overwrite (or it is continued with --resume).
"$g4moe" train "${small[@]}" train.steps=4 output.save_every=2 output.dir="$scratch/run" >/dev/null 2>&1 &&
  pass "a first run" || bad "a first run"
cp "$scratch/run/metrics.jsonl" "$scratch/metrics.before"
expect_final_error "a second run into the same output.dir is refused" "already holds a run (metrics.jsonl" \
  "$g4moe" train "${small[@]}" train.steps=2 output.dir="$scratch/run"
same_file "$scratch/run/metrics.jsonl" "$scratch/metrics.before" && [ -d "$scratch/run/checkpoint-4" ] &&
  pass "the earlier run is untouched" || bad "the earlier run is untouched"
"$g4moe" train "${small[@]}" train.steps=3 output.dir="$scratch/run" --overwrite >/dev/null 2>&1 &&
  [ "$(grep -c '"loss"' "$scratch/run/metrics.jsonl")" -eq 3 ] && pass "train --overwrite starts a new run" ||
  bad "train --overwrite"

# 3. score --output: no replacing without --overwrite, never the model's own files.
model="$scratch/empty"
cp "$model/model.safetensors" "$scratch/weights.before"
echo "precious" >"$scratch/out.safetensors"
expect_error "score refuses an existing --output" "already exists (a file)" \
  "$g4moe" score --model "$model" --input "$scratch/in.json" --output "$scratch/out.safetensors"
[ "$(cat "$scratch/out.safetensors")" = precious ] && pass "score left the file alone" || bad "score kept the file"
expect_error "score never writes over the model's weights" "of the model itself" \
  "$g4moe" score --model "$model" --input "$scratch/in.json" --output "$model/model.safetensors" --overwrite
same_file "$model/model.safetensors" "$scratch/weights.before" && pass "the weights are intact" ||
  bad "the weights are intact"
"$g4moe" score --model "$model" --input "$scratch/in.json" --output "$scratch/out.safetensors" --overwrite \
  >/dev/null && pass "score --overwrite replaces its own output" || bad "score --overwrite"

# 4. Resume files are outside input: each corruption is one clear line, and nothing is written.
ck="$scratch/run/checkpoint-3"
corrupt() {  # corrupt NAME PYTHON: a copy of the checkpoint edited by PYTHON (d = its directory)
  rm -rf "$scratch/bad" && cp -r "$ck" "$scratch/bad" && python3 -c "d='$scratch/bad'; $2" || bad "corrupt $1"
}
state_edit() { echo "import json; p=d+'/trainer_state.json'; s=json.load(open(p)); $1; json.dump(s, open(p, 'w'))"; }
resume_bad() { expect_final_error "$1" "$2" "$g4moe" train "${small[@]}" train.steps=6 output.dir="$scratch/r" \
  --resume "$scratch/bad"; [ -e "$scratch/r" ] && bad "$1: nothing written" && rm -rf "$scratch/r"; }
corrupt step "$(state_edit "s['step'] = -3")"
resume_bad "negative step" '"step" is -3, must not be negative'
corrupt cursor "$(state_edit "s['data_cursor'] = 10**12")"
resume_bad "cursor past the data" "past the"
corrupt optimizer_steps "$(state_edit "s['optimizer_steps'] = 99")"
resume_bad "optimizer_steps after step" "exceeds"
corrupt type "$(state_edit "s['tokens_seen'] = 'many'")"
resume_bad "tokens_seen of the wrong type" "tokens_seen"
corrupt no_recipe "$(state_edit "s['recipe'] = [1]")"
resume_bad "recipe of the wrong type" '"recipe" must be an object'
resume_bad_py() {  # rewrite optimizer.safetensors with python: t = {name: (dtype, shape, bytes)}
  corrupt "$1" "import json, struct
p = d + '/optimizer.safetensors'; raw = open(p, 'rb').read(); n = struct.unpack('<Q', raw[:8])[0]
h = json.loads(raw[8:8 + n]); h.pop('__metadata__', None); body = raw[8 + n:]
t = {k: (v['dtype'], v['shape'], body[v['data_offsets'][0]:v['data_offsets'][1]]) for k, v in h.items()}
$2
out, off, blob = {}, 0, b''
for k, (dt, sh, b) in t.items(): out[k] = {'dtype': dt, 'shape': sh, 'data_offsets': [off, off + len(b)]}; off += len(b); blob += b
hb = json.dumps(out).encode(); hb += b' ' * (-len(hb) % 8)
open(p, 'wb').write(struct.pack('<Q', len(hb)) + hb + blob)"
}
first=$(python3 -c "import json,struct; f=open('$ck/optimizer.safetensors','rb'); n=struct.unpack('<Q',f.read(8))[0]; print(sorted(k for k in json.loads(f.read(n)) if k.startswith('exp_avg.'))[0][8:])")
resume_bad_py missing "del t['exp_avg_sq.$first']"
resume_bad "a missing moment" "missing tensor exp_avg_sq.$first"
resume_bad_py extra "t['exp_avg.model.not_a_weight'] = ('F32', [1], b'\\0' * 4)"
resume_bad "an extra moment" "names no trainable parameter"
resume_bad_py shape "dt, sh, b = t['exp_avg.$first']; t['exp_avg.$first'] = (dt, [len(b) // 4], b)"
resume_bad "a moment of another shape (another model)" "but the model's parameter has"
resume_bad_py nan "dt, sh, b = t['exp_avg.$first']; t['exp_avg.$first'] = (dt, sh, struct.pack('<f', float('nan')) + b[4:])"
resume_bad "a NaN moment" "non-finite value"
resume_bad_py negative "dt, sh, b = t['exp_avg_sq.$first']; t['exp_avg_sq.$first'] = (dt, sh, struct.pack('<f', -1.0) + b[4:])"
resume_bad "a negative second moment" "negative second moment"
expect_final_error "a resume that changes data.seq_len is refused" "cannot change in the middle of a run (data.seq_len)" \
  "$g4moe" train "${small[@]}" data.seq_len=32 train.steps=6 output.dir="$scratch/run" --resume "$ck"
"$g4moe" train "${small[@]}" data.seq_len=32 train.steps=4 output.dir="$scratch/run" --resume "$ck" \
  --allow-recipe-change >/dev/null 2>&1 && pass "--allow-recipe-change lets it continue" || bad "--allow-recipe-change"
expect_final_error "a checkpoint already at train.steps" "nothing is left to train" \
  "$g4moe" train "${small[@]}" train.steps=3 output.dir="$scratch/run" --resume "$ck"

# 5. Metrics after a resume continue the file without duplicate steps.
"$g4moe" train "${small[@]}" train.steps=6 output.save_every=2 output.dir="$scratch/m" >/dev/null 2>&1 || bad "metrics run"
"$g4moe" train "${small[@]}" train.steps=6 output.save_every=2 output.dir="$scratch/m" --resume "$scratch/m/checkpoint-2" \
  >/dev/null 2>&1 || bad "metrics resume"
python3 - "$scratch/m/metrics.jsonl" <<'PY' && pass "metrics continue without duplicate steps" || bad "metrics have duplicates"
import json, sys
steps = [json.loads(l)["step"] for l in open(sys.argv[1]) if '"loss"' in l]
assert steps == [1, 2, 3, 4, 5, 6], steps
PY

# 6. SIGTERM (Slurm, Kubernetes) in one process: saves and exits 130 like Ctrl-C.
"$g4moe" train "${small[@]}" train.steps=400 output.dir="$scratch/term" >"$scratch/term.out" 2>&1 &
stop_after_lines $! "$scratch/term/metrics.jsonl" 2 TERM
rc=$?
[ "$rc" -eq 130 ] && ls -d "$scratch"/term/checkpoint-* >/dev/null 2>&1 && pass "SIGTERM saves and exits 130" ||
  bad "SIGTERM (rc=$rc)"

# 7. Non-finite values.
cp -r "$model" "$scratch/nanmodel"
python3 tests/cli/set_tensor.py "$scratch/nanmodel/model.safetensors" model.norm.weight nan
expect_error "score refuses NaN weights" "model.norm.weight (element 0) of .* is NaN or infinite" \
  "$g4moe" score --model "$scratch/nanmodel" --input "$scratch/in.json"
expect_error "convert refuses NaN weights" "holds a non-finite value" \
  "$g4moe" convert --to native "$scratch/nanmodel" "$scratch/nanconv"
[ -e "$scratch/nanconv" ] && bad "convert wrote nothing" || pass "convert wrote nothing"
"$g4moe" convert --to native "$scratch/nanmodel" "$scratch/nanconv" --allow-non-finite >/dev/null 2>&1 &&
  pass "convert --allow-non-finite" || bad "convert --allow-non-finite"
expect_final_error "train refuses NaN weights" "is NaN or infinite: nothing to train from" \
  "$g4moe" train "${small[@]}" model.path="$scratch/nanmodel" output.dir="$scratch/nantrain"
expect_final_error "a diverging run from scratch says no checkpoint had a finite loss" \
  "no checkpoint of this run gave a finite loss" \
  "$g4moe" train "${small[@]}" train.steps=30 train.lr=1e30 train.max_grad_norm=0 output.save_every=1 \
  output.dir="$scratch/diverge"
expect_final_error "a diverging resumed run names the last checkpoint whose own loss was finite" \
  "the last checkpoint whose own loss was finite is $scratch/run/checkpoint-3" \
  "$g4moe" train "${small[@]}" train.steps=30 train.lr=1e30 train.max_grad_norm=0 output.save_every=1 \
  output.dir="$scratch/diverge2" --resume "$scratch/run/checkpoint-3"

# 8. save_total_limit rotates this run's checkpoints only.
mkdir -p "$scratch/keep/checkpoint-100" && echo "older run" >"$scratch/keep/checkpoint-100/notes.txt"
"$g4moe" train "${small[@]}" train.steps=5 output.save_every=1 output.save_total_limit=2 output.dir="$scratch/keep" \
  --overwrite >/dev/null 2>&1 || bad "save_total_limit run"
[ "$(cd "$scratch/keep" && ls -d checkpoint-* | sort | tr '\n' ' ')" = "checkpoint-100 checkpoint-4 checkpoint-5 " ] &&
  pass "save_total_limit keeps the newest" || bad "save_total_limit: $(ls "$scratch/keep")"

# 9. A bf16 model stays bf16: checkpoints in BF16 with fp32 master weights, resumed bit for bit.
python3 - "$model/config.json" "$scratch/bf16config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["dtype"] = "bfloat16"; json.dump(c, open(sys.argv[2], "w"))
PY
"$g4moe" init --config "$scratch/bf16config.json" --out "$scratch/bf16" >/dev/null || bad "init bf16"
bf=(model.path="$scratch/bf16")
"$g4moe" train "${small[@]}" "${bf[@]}" train.steps=4 output.save_every=2 output.dir="$scratch/bfrun" >/dev/null 2>&1 ||
  bad "train a bf16 model"
python3 - "$scratch/bf16/model.safetensors" "$scratch/bfrun/checkpoint-4" <<'PY' && pass "bf16 in, bf16 out, fp32 masters" || bad "bf16 checkpoint"
import json, struct, sys, os
def header(p):
    f = open(p, "rb"); n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n)); h.pop("__metadata__", None); return h
src, ck = header(sys.argv[1]), header(sys.argv[2] + "/model.safetensors")
assert {v["dtype"] for v in src.values()} == {"BF16"}, "source"
assert {v["dtype"] for v in ck.values()} == {"BF16"}, {v["dtype"] for v in ck.values()}
opt = header(sys.argv[2] + "/optimizer.safetensors")
masters = [k for k in opt if k.startswith("master.")]
assert masters and all(opt[k]["dtype"] == "F32" for k in masters), len(masters)
assert len(masters) == len([k for k in opt if k.startswith("exp_avg.")])
PY
"$g4moe" train "${small[@]}" "${bf[@]}" train.steps=4 output.save_every=2 output.dir="$scratch/bfrun" \
  --resume "$scratch/bfrun/checkpoint-2" >/dev/null 2>&1 || bad "resume a bf16 run"
python3 - "$scratch/bfrun/metrics.jsonl" "$scratch/metrics.bf" <<'PY' || bad "bf16 resume metrics"
import json, sys
open(sys.argv[2], "w").write(json.dumps([json.loads(l)["loss"] for l in open(sys.argv[1]) if '"loss"' in l]))
PY
"$g4moe" train "${small[@]}" "${bf[@]}" train.steps=4 output.dir="$scratch/bfstraight" >/dev/null 2>&1 || bad "bf16 straight"
python3 - "$scratch/bfstraight/metrics.jsonl" "$scratch/metrics.bf" <<'PY' && pass "a bf16 run resumes bit for bit (fp32 masters)" || bad "bf16 resume is not exact"
import json, sys
a = [json.loads(l)["loss"] for l in open(sys.argv[1]) if '"loss"' in l]
b = json.load(open(sys.argv[2]))
assert a == b, (a, b)
PY

finish disk_safety_test
