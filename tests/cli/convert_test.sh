#!/usr/bin/env bash
# End-to-end checks of `g4moe convert`: HF → native → HF round trips on committed MoE fixtures, the native key
# names and layout, the per_expert_scale fold, and one-line errors (exit 2) with no partial output.
# Usage: convert_test.sh path/to/g4moe   (run from the repository root)
set -u
g4moe="$1"
source "$(dirname "$0")/lib.sh"


# A tiny safetensors reader/writer (no numpy), shared by the checks below.
cat >"$scratch/st.py" <<'PY'
import array, glob, json, os, struct
def read_dir(d):
    out = {}
    for f in sorted(glob.glob(os.path.join(d, "model*.safetensors"))):
        b = open(f, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
        for k, v in h.items():
            if k == "__metadata__": continue
            s, e = v["data_offsets"]; out[k] = (v["dtype"], v["shape"], b[8 + n + s:8 + n + e])
    return out
def write_file(path, tensors):
    header, data = {}, b""
    for k, (dt, shape, raw) in tensors.items():
        header[k] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}; data += raw
    hb = json.dumps(header).encode(); hb += b" " * (-len(hb) % 8)
    open(path, "wb").write(struct.pack("<Q", len(hb)) + hb + data)
def floats(raw): return array.array("f", raw)
PY

for fixture in moe_26b released_layout; do
  src=tests/fixtures/$fixture
  native="$scratch/$fixture.native"
  back="$scratch/$fixture.hf"
  "$g4moe" convert --to native "$src" "$native" >"$scratch/out" 2>"$scratch/err" || bad "$fixture: convert --to native ($(cat "$scratch/err"))"
  "$g4moe" convert --to hf "$native" "$back" >"$scratch/out" 2>"$scratch/err" || bad "$fixture: convert --to hf ($(cat "$scratch/err"))"
  cmp -s "$src/config.json" "$native/config.json" && cmp -s "$src/config.json" "$back/config.json" \
    && pass "$fixture: config.json copied unchanged" || bad "$fixture: config.json changed"
  PYTHONPATH="$scratch" python3 - "$src" "$native" "$back" <<'PY' && pass "$fixture: native layout and bit-exact round trip" || bad "$fixture: round trip"
import re, struct, sys
from st import read_dir, floats
src, nat, back = (read_dir(d) for d in sys.argv[1:])
prefix = "model.language_model." if any(k.startswith("model.language_model.") for k in src) else "model."
layers = sorted({int(m.group(1)) for k in src for m in [re.match(re.escape(prefix) + r"layers\.(\d+)\.experts\.", k)] if m})
assert layers, "no MoE layers found"
for L in layers:
    P = f"{prefix}layers.{L}"
    _, gus, gu = src[P + ".experts.gate_up_proj"]; _, dns, dn = src[P + ".experts.down_proj"]
    E, I2, H = gus; I = dns[2]
    s = floats(src[P + ".router.per_expert_scale"][2])
    assert nat[P + ".moe.experts.gate_and_up_projs"][1] == [E, H, I2]
    assert nat[P + ".moe.experts.down_projs"][1] == [E, I, H]
    assert nat[P + ".moe.gate.proj.weight"][2] == src[P + ".router.proj.weight"][2]
    assert nat[P + ".moe.gate.scale"][2] == src[P + ".router.scale"][2]
    assert not any(k.startswith(P + ".router.") or k.startswith(P + ".experts.") for k in nat), "HF keys left"
    ngu = floats(nat[P + ".moe.experts.gate_and_up_projs"][2]); hgu = floats(gu)
    ndn = floats(nat[P + ".moe.experts.down_projs"][2]); hdn = floats(dn)
    for e in range(E):
        for h in range(H):
            for j in range(I2): assert ngu[(e * H + h) * I2 + j] == hgu[(e * I2 + j) * H + h]
            for i in range(I):
                want = struct.unpack("f", struct.pack("f", hdn[(e * H + h) * I + i] * s[e]))[0]
                assert ndn[(e * I + i) * H + h] == want, (P, e, h, i)
    # back in HF: per_expert_scale is ones, down_proj is the folded one, exact where the scale is 1.
    assert list(floats(back[P + ".router.per_expert_scale"][2])) == [1.0] * E
    bdn = floats(back[P + ".experts.down_proj"][2])
    for e in range(E):
        for h in range(H):
            for i in range(I):
                assert bdn[(e * H + h) * I + i] == ndn[(e * I + i) * H + h]
assert sorted(back) == sorted(src), set(back) ^ set(src)
for k, (dt, shape, raw) in src.items():
    if k.endswith("experts.down_proj") or k.endswith("router.per_expert_scale"): continue
    assert back[k] == (dt, shape, raw), k
PY
done

# Unit scales: the whole round trip is bit-exact, down_proj and per_expert_scale included.
mkdir -p "$scratch/unit"
cp tests/fixtures/moe_26b/config.json "$scratch/unit/"
PYTHONPATH="$scratch" python3 - tests/fixtures/moe_26b "$scratch/unit/model.safetensors" <<'PY'
import array, sys
from st import read_dir, write_file
t = read_dir(sys.argv[1])
for k in list(t):
    if k.endswith("per_expert_scale"): t[k] = ("F32", t[k][1], array.array("f", [1.0] * t[k][1][0]).tobytes())
write_file(sys.argv[2], t)
PY
"$g4moe" convert --to native "$scratch/unit" "$scratch/unit.native" >/dev/null 2>&1 \
  && "$g4moe" convert --to hf "$scratch/unit.native" "$scratch/unit.hf" >/dev/null 2>&1 \
  && PYTHONPATH="$scratch" python3 -c "
import sys; from st import read_dir
a, b = read_dir('$scratch/unit'), read_dir('$scratch/unit.hf'); assert a == b" \
  && pass "unit scales: HF -> native -> HF is bit-exact for every tensor" || bad "unit-scale round trip"

# A missing per_expert_scale means ones, and stderr says so.
mkdir -p "$scratch/noscale"
cp tests/fixtures/moe_26b/config.json "$scratch/noscale/"
PYTHONPATH="$scratch" python3 - tests/fixtures/moe_26b "$scratch/noscale/model.safetensors" <<'PY'
import sys
from st import read_dir, write_file
t = read_dir(sys.argv[1]); del t["model.layers.0.router.per_expert_scale"]; write_file(sys.argv[2], t)
PY
"$g4moe" convert --to native "$scratch/noscale" "$scratch/noscale.native" >/dev/null 2>"$scratch/err" \
  && grep -q "model.layers.0 has no router.per_expert_scale" "$scratch/err" \
  && pass "missing per_expert_scale: converted with ones and a note" || bad "missing per_expert_scale ($(cat "$scratch/err"))"

# Errors: one line, exit 2, and no output directory (nor temporary) left behind.
mkdir -p "$scratch/incomplete"
cp tests/fixtures/moe_26b/config.json "$scratch/incomplete/"
PYTHONPATH="$scratch" python3 - tests/fixtures/moe_26b "$scratch/incomplete/model.safetensors" <<'PY'
import sys
from st import read_dir, write_file
t = read_dir(sys.argv[1]); del t["model.layers.3.experts.down_proj"]; write_file(sys.argv[2], t)
PY
expect_error "incomplete experts" "incomplete expert weights in model.layers.3" \
  "$g4moe" convert --to native "$scratch/incomplete" "$scratch/out_incomplete"
[ ! -e "$scratch/out_incomplete" ] && [ -z "$(ls -A "$scratch" | grep '^\.out_incomplete')" ] \
  && pass "no partial output after an error" || bad "partial output left behind"
expect_error "already HF" "already in the HF layout" "$g4moe" convert --to hf tests/fixtures/moe_26b "$scratch/o1"
expect_error "already native" "already in the native layout" \
  "$g4moe" convert --to native "$scratch/moe_26b.native" "$scratch/o2"
expect_error "bad --to" "--to must be native or hf" "$g4moe" convert --to gguf tests/fixtures/moe_26b "$scratch/o3"
expect_error "output exists" "already exists" "$g4moe" convert --to native tests/fixtures/moe_26b "$scratch/moe_26b.native"
expect_error "missing input" "not a checkpoint directory" "$g4moe" convert --to native "$scratch/nowhere" "$scratch/o4"
cp -r tests/fixtures/released_layout "$scratch/trunc"
truncate -s -64 "$(ls "$scratch/trunc"/model-00002-of-*.safetensors)"
expect_error "truncated shard" "truncated" "$g4moe" convert --to native "$scratch/trunc" "$scratch/o5"
[ ! -e "$scratch/o5" ] && pass "no output for a truncated shard" || bad "output for a truncated shard"

# Sharding: a small --max-shard-size gives an index, and the result converts back.
"$g4moe" convert --to native --max-shard-size 100000 tests/fixtures/moe_26b "$scratch/sharded" >/dev/null 2>&1 \
  && [ -f "$scratch/sharded/model.safetensors.index.json" ] \
  && "$g4moe" convert --to hf "$scratch/sharded" "$scratch/sharded.hf" >/dev/null 2>&1 \
  && PYTHONPATH="$scratch" python3 -c "
from st import read_dir; a, b = read_dir('$scratch/moe_26b.hf'), read_dir('$scratch/sharded.hf'); assert a == b" \
  && pass "sharded native output converts back identically" || bad "sharded output"

finish convert_test
