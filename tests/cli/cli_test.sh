#!/usr/bin/env bash
# End-to-end checks of the g4moe binary on real files: exit codes and one-line errors on bad input.
# Usage: cli_test.sh path/to/g4moe   (run from the repository root)
set -u
g4moe="$1"
source "$(dirname "$0")/lib.sh"


released=tests/fixtures/released_layout
saved=tests/fixtures/moe_padding

# Both layouts of the same architecture resolve to the same layer specs.
"$g4moe" inspect --json "$released" >"$scratch/a.json" || bad "inspect released layout"
"$g4moe" inspect --json "$saved" >"$scratch/b.json" || bad "inspect saved layout"
python3 - "$scratch/a.json" "$scratch/b.json" <<'PY' && pass "same layer specs in both layouts" || bad "layer specs differ"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
assert a["layers"] == b["layers"], (a["layers"], b["layers"])
assert a["checkpoint"]["files"] == 2 and b["checkpoint"]["files"] == 1
assert a["checkpoint"]["missing"] == [] and a["checkpoint"]["unexpected"] == []
PY

"$g4moe" inspect tests/data/configs/gemma-4-26b-a4b.json | grep -q "25.23B total" && pass "26B-A4B total" || bad "26B-A4B total"
"$g4moe" inspect tests/data/configs/gemma-4-26b-a4b.json | grep -q "3.82B active per token" && pass "26B-A4B active" || bad "26B-A4B active"
# KV cache of the 26B-A4B in bf16: 25 sliding layers keep 1024 positions x 8 heads x 256 x (K, V) x 2 bytes =
# 200 MiB; 5 full layers keep every position x 2 heads x 512 x 2 x 2 bytes = 20 KiB per token (80 MiB at 4096,
# 2560 MiB at 131072).
"$g4moe" inspect tests/data/configs/gemma-4-26b-a4b.json | grep -q "4096 tokens 280.00 MiB; 32768 tokens 840.00 MiB; 131072 tokens 2.70 GiB" &&
  pass "26B-A4B KV cache sizes" || bad "26B-A4B KV cache sizes"

# The vision tower's tensors are checked against vision_config: a renamed tensor is missing (and the new name
# unexpected), a config that implies other shapes reports them; the audio tower is only counted.
vt=tests/fixtures/vision_tower
"$g4moe" inspect "$vt" | grep -q "0 missing, 0 unexpected, 0 wrong shape" && pass "vision tower tensors check" || bad "vision tower tensors check"
cp -r "$vt" "$scratch/vt_renamed"
python3 - "$scratch/vt_renamed/model.safetensors" <<'PY'
import sys
path = sys.argv[1]
data = open(path, "rb").read()
assert data.count(b"model.vision_tower.std_bias") == 1
open(path, "wb").write(data.replace(b"model.vision_tower.std_bias", b"model.vision_tower.std_biaX"))
PY
"$g4moe" inspect "$scratch/vt_renamed" >"$scratch/out" 2>&1
[ $? -eq 2 ] && grep -q "missing: model.vision_tower.std_bias" "$scratch/out" && grep -q "unexpected: model.vision_tower.std_biaX" "$scratch/out" &&
  pass "renamed vision tensor: missing and unexpected" || bad "renamed vision tensor: $(tail -3 "$scratch/out")"
cp -r "$vt" "$scratch/vt_config"
python3 -c "import json,sys; p=sys.argv[1]; c=json.load(open(p)); c['vision_config']['intermediate_size']=20; json.dump(c, open(p,'w'))" "$scratch/vt_config/config.json"
"$g4moe" inspect "$scratch/vt_config" >"$scratch/out" 2>&1
[ $? -eq 2 ] && grep -q "mlp.gate_proj.linear.weight is \[24, 16\], expected \[20, 16\]" "$scratch/out" &&
  pass "vision_config shapes checked" || bad "vision_config shapes: $(tail -3 "$scratch/out")"

# A truncated shard.
cp -r "$released" "$scratch/trunc"
shard=$(ls "$scratch/trunc"/model-00002-of-*.safetensors)
truncate -s -64 "$shard"
expect_error "truncated shard" "truncated" "$g4moe" inspect "$scratch/trunc"

# An edited header: a dtype changed to one that does not exist.
cp -r "$saved" "$scratch/edited"
sed -i '0,/"F32"/s//"Q32"/' "$scratch/edited/model.safetensors"
expect_error "edited header" 'unknown dtype "Q32"' "$g4moe" inspect "$scratch/edited"

# A missing shard.
cp -r "$released" "$scratch/noshard"
rm "$scratch/noshard"/model-00001-of-*.safetensors
expect_error "missing shard" "missing shard" "$g4moe" inspect "$scratch/noshard"

# Invalid config JSON, and a config that contradicts itself.
cp -r "$saved" "$scratch/badjson"
echo '{"model_type": "gemma4_text",' >"$scratch/badjson/config.json"
expect_error "invalid config JSON" "invalid JSON" "$g4moe" inspect "$scratch/badjson"
cp -r "$saved" "$scratch/heads"
python3 - "$scratch/heads/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["num_key_value_heads"] = 3; json.dump(c, open(sys.argv[1], "w"))
PY
expect_error "heads not divisible" "not divisible" "$g4moe" inspect "$scratch/heads"

# Sizes that leave 64 bits are one-line errors, not wrapped counts (a vocabulary of 2^57 printed a negative
# parameter count; 2^62 made init write a zero-byte embedding and exit 0), and init writes nothing.
for e in 57 62; do
  python3 - "$saved/config.json" "$scratch/vocab$e.json" "$e" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["vocab_size"] = 2 ** int(sys.argv[3]); json.dump(c, open(sys.argv[2], "w"))
PY
done
expect_error "inspect vocab 2^57" "vocab_size 144115188075855872 is larger than 2^31 - 1: not a plausible" \
  "$g4moe" inspect "$scratch/vocab57.json"
expect_error "init vocab 2^62" "vocab_size 4611686018427387904 is larger than 2^31 - 1: not a plausible" \
  "$g4moe" init --config "$scratch/vocab62.json" --out "$scratch/init62"
[ -z "$(find "$scratch" -maxdepth 1 -name 'init62*')" ] && pass "init vocab 2^62 writes nothing" ||
  bad "init vocab 2^62 wrote $(find "$scratch" -maxdepth 1 -name 'init62*')"

# Tensors that do not match the config: all listed, exit 2.
cp -r "$saved" "$scratch/mismatch"
python3 - "$scratch/mismatch/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["hidden_size"] = 48; json.dump(c, open(sys.argv[1], "w"))
PY
"$g4moe" inspect "$scratch/mismatch" >"$scratch/out" 2>"$scratch/err"
rc=$?
if [ $rc -eq 2 ] && grep -q "wrong shape: model.embed_tokens.weight" "$scratch/out" && [ "$(wc -l <"$scratch/err")" -eq 1 ]; then
  pass "wrong shapes listed"
else
  bad "wrong shapes listed (rc=$rc)"
fi

# score: one JSON line; the logits file matches the float64 reference of transformers.
fx=tests/fixtures/moe_padding
"$g4moe" score --model "$fx" --input "$fx/input.json" --output "$scratch/logits.safetensors" >"$scratch/score.json" \
  && pass "score runs" || bad "score runs"
python3 - "$scratch/score.json" "$scratch/logits.safetensors" "$fx/expected.safetensors" "$fx/input.json" <<'PY' \
  && pass "score output matches the reference" || bad "score output matches the reference"
import json, struct, sys, math
line = open(sys.argv[1]).read().strip().splitlines()
assert len(line) == 1, line
out = json.loads(line[0])
def read(path, name):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    h = json.loads(data[8:8 + n])[name]
    b, e = h["data_offsets"]
    fmt = {"F32": "f", "F64": "d"}[h["dtype"]]
    raw = data[8 + n + b: 8 + n + e]
    return h["shape"], struct.unpack("<%d%s" % (len(raw) // struct.calcsize(fmt), fmt), raw)
shape, logits = read(sys.argv[2], "logits")
eshape, expected = read(sys.argv[3], "logits")
_, loss = read(sys.argv[3], "loss")
assert shape == eshape, (shape, eshape)
mask = [m for row in json.load(open(sys.argv[4]))["attention_mask"] for m in row]
V = shape[-1]
num = sum((logits[i] - expected[i]) ** 2 for i in range(len(logits)) if mask[i // V])
den = sum(expected[i] ** 2 for i in range(len(logits)) if mask[i // V])
assert math.sqrt(num / den) < 1e-5, math.sqrt(num / den)
assert abs(out["loss"] - loss[0]) / loss[0] < 1e-5, (out, loss)
assert out["num_tokens"] == 14, out
PY

# score --grads: the gradients in the checkpoint's names match transformers' autograd.
"$g4moe" score --model "$released" --input "$released/input.json" --output "$scratch/grads.safetensors" --grads \
  >/dev/null && pass "score --grads runs" || bad "score --grads runs"
python3 - "$scratch/grads.safetensors" "$released/expected.safetensors" <<'PY' && pass "score --grads matches" || bad "score --grads matches"
import json, struct, sys, math
def header(path):
    data = open(path, "rb").read(); n = struct.unpack("<Q", data[:8])[0]
    return data, n, json.loads(data[8:8 + n])
def values(data, n, h):
    b, e = h["data_offsets"]; fmt = {"F32": "f", "F64": "d"}[h["dtype"]]
    raw = data[8 + n + b: 8 + n + e]
    return struct.unpack("<%d%s" % (len(raw) // struct.calcsize(fmt), fmt), raw)
gd, gn, gh = header(sys.argv[1]); ed, en, eh = header(sys.argv[2])
names = [k for k in gh if k.startswith("grad.")]
assert len(names) == len([k for k in eh if k.startswith("grad.")]) > 10, len(names)
for k in names:
    a, e = values(gd, gn, gh[k]), values(ed, en, eh[k])
    num = sum((x - y) ** 2 for x, y in zip(a, e)); den = sum(y * y for y in e)
    assert math.sqrt(num / den) < 1e-4, (k, math.sqrt(num / den))
PY

# A native-layout checkpoint (g4moe convert) inspects clean and scores the same logits as its HF source (1e-6).
"$g4moe" convert --to native tests/fixtures/moe_26b "$scratch/native" >/dev/null 2>&1 || bad "convert to native"
"$g4moe" inspect "$scratch/native" >/dev/null && pass "inspect native layout" || bad "inspect native layout"
"$g4moe" score --model tests/fixtures/moe_26b --input tests/fixtures/moe_26b/input.json --output "$scratch/hf.st" >/dev/null
"$g4moe" score --model "$scratch/native" --input tests/fixtures/moe_26b/input.json --output "$scratch/nat.st" >/dev/null
python3 - "$scratch/hf.st" "$scratch/nat.st" <<'PY' && pass "native scores like HF" || bad "native scores like HF"
import json, struct, sys, math
def logits(path):
    data = open(path, "rb").read(); n = struct.unpack("<Q", data[:8])[0]
    h = json.loads(data[8:8 + n])["logits"]; b, e = h["data_offsets"]
    raw = data[8 + n + b: 8 + n + e]; return struct.unpack("<%df" % (len(raw) // 4), raw)
a, b = logits(sys.argv[1]), logits(sys.argv[2])
err = math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)) / sum(x * x for x in a))
assert err < 1e-6, err
PY

# score: bad input gets one line and exit 2.
echo '{"input_ids": [[1, 2, 96]]}' >"$scratch/oor.json"
expect_error "token id out of range" "token id 96 at input_ids\[0\]\[2\] is out of range" \
  "$g4moe" score --model "$fx" --input "$scratch/oor.json"
echo '{"input_ids": [[1, 2, 3], [4, 5]]}' >"$scratch/ragged.json"
expect_error "ragged rows" "ragged rows" "$g4moe" score --model "$fx" --input "$scratch/ragged.json"
echo '{"input_ids": [[1, 2, 3]], "labels": [[1, 2]]}' >"$scratch/shape.json"
expect_error "mismatched label shape" "labels\" row 0 has 2 entries, expected 3" \
  "$g4moe" score --model "$fx" --input "$scratch/shape.json"
echo '{"input_ids": [[1, 2, 3]], "attention_mask": [[1, 2, 1]]}' >"$scratch/mask.json"
expect_error "attention mask not 0/1" "must be 0 or 1" "$g4moe" score --model "$fx" --input "$scratch/mask.json"
echo '{"input_ids": [[1, 2' >"$scratch/trunc.json"
expect_error "truncated input JSON" "invalid JSON" "$g4moe" score --model "$fx" --input "$scratch/trunc.json"
cp -r "$fx" "$scratch/notensor"
python3 - "$scratch/notensor/model.safetensors" <<'PY'
# Rename one tensor in the header (same length) so that the checkpoint lacks it.
import sys
p = sys.argv[1]; data = bytearray(open(p, "rb").read())
i = data.find(b"model.norm.weight"); data[i:i + 17] = b"model.xorm.weight"; open(p, "wb").write(data)
PY
expect_error "missing tensor" "missing tensor model.norm.weight" \
  "$g4moe" score --model "$scratch/notensor" --input "$fx/input.json"
rm -f "$scratch/none.safetensors"
"$g4moe" score --model "$fx" --input "$scratch/oor.json" --output "$scratch/none.safetensors" 2>/dev/null
[ ! -e "$scratch/none.safetensors" ] && pass "no output file on error" || bad "no output file on error"

expect_error "missing directory" "missing config.json" "$g4moe" inspect "$scratch/nowhere"
# bf16 is the GPU's compute dtype; the CPU computes in f32. Without a usable GPU or a CUDA build (CI, the
# sanitizer build), --device cuda is one line naming CUDA.
expect_error "bf16 on the CPU" "runs on the GPU only" "$g4moe" score --model "$fx" --input "$fx/input.json" --dtype bf16
expect_error "bench bf16 on the CPU" "runs on the GPU only" "$g4moe" bench forward --preset tiny-moe --dtype bf16
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  expect_error "score --device cuda without a GPU" "CUDA" \
    "$g4moe" score --model "$fx" --input "$fx/input.json" --device cuda
fi
"$g4moe" --help | grep -q inspect && pass "--help lists inspect" || bad "--help"

finish cli_test
