#!/usr/bin/env bash
# image_train_test.sh: `g4moe train` on image-text conversations (JSONL messages with {"type": "image"} parts)
# with a vision-language checkpoint: a tiny Gemma4ForConditionalGeneration written by `g4moe init` from the
# vision_tower fixture's config (vocabulary widened to the test tokenizer's 600 tokens + the three image
# tokens), the test tokenizer, and real photographs of tests/fixtures/images. Checks: the loss falls; the
# checkpoint holds the towers byte for byte (frozen) and every text tensor; a missing or corrupt image, an
# image for a text-only model, and an image that truncation would cut are one-line errors naming the file and
# line, exit 2, nothing written. train.vision projection and tower, resumed exactly. And `score` with images
# against transformers' float64 run.
# Usage: tests/cli/image_train_test.sh G4MOE_BINARY
set -u
g4moe=${1:-build/g4moe}
cd "$(dirname "$0")/../.."
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failures=0
# A safetensors file's tensors as raw bytes, or as floats (F32/F64), with the standard library alone.
export PYTHONPATH="$scratch${PYTHONPATH:+:$PYTHONPATH}"
cat >"$scratch/safetensors_bytes.py" <<'PY'
import json, struct
def entries(path):  # name -> (dtype, raw bytes)
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    return {k: (v["dtype"], data[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in header.items() if k != "__metadata__"}
def tensors(path):
    return {k: raw for k, (dtype, raw) in entries(path).items()}
def floats(path):
    out = {}
    for k, (dtype, raw) in entries(path).items():
        fmt = {"F32": "f", "F64": "d"}[dtype]
        out[k] = struct.unpack(f"<{len(raw) // struct.calcsize(fmt)}{fmt}", raw)
    return out
PY
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; failures=$((failures + 1)); }

python3 - tests/fixtures/vision_tower/config.json "$scratch/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["text_config"]["vocab_size"] = 603
c["boi_token_id"], c["image_token_id"], c["eoi_token_id"] = 600, 601, 602
c["vision_config"]["position_embedding_size"] = 64  # patch grids of up to 64 columns
json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
"$g4moe" init --config "$scratch/config.json" --out "$scratch/model" >/dev/null || bad "init of the VLM"
cp tests/data/tokenizer/tokenizer.json "$scratch/model/"
echo '{"image_processor": {"image_processor_type": "Gemma4ImageProcessor", "patch_size": 2, "pooling_kernel_size": 2,
  "max_soft_tokens": 70}}' >"$scratch/model/processor_config.json"
mkdir -p "$scratch/data/img"
cp tests/fixtures/images/{chelsea_420.jpg,astronaut_tiny.png,coffee_palette.png,rocket_exif6.jpg} "$scratch/data/img/"
python3 - "$scratch/data" <<'PY'
import json, sys
images = ["chelsea_420.jpg", "astronaut_tiny.png", "coffee_palette.png", "rocket_exif6.jpg"]
answers = ["a cat near the river.", "a person in a suit.", "a cup of coffee.", "a rocket on its pad."]
with open(sys.argv[1] + "/train.jsonl", "w") as f:
    for i in range(16):
        user = [{"type": "image", "path": "img/" + images[i % 4]}, {"type": "text", "text": "what is this?"}]
        if i % 4 == 3:  # two images in one message
            user.insert(1, {"type": "image", "path": "img/" + images[(i + 1) % 4]})
        f.write(json.dumps({"messages": [{"role": "user", "content": user},
                                         {"role": "assistant", "content": answers[i % 4]}]}) + "\n")
    f.write(json.dumps({"text": "a text-only line packs beside the conversations."}) + "\n")
PY
cat >"$scratch/vlm.yaml" <<YAML
model:
  path: $scratch/model
data:
  path: $scratch/data/train.jsonl
  seq_len: 160
  eval_fraction: 0.2
train:
  steps: 40
  batch_size: 2
  lr: 1.0e-2
  warmup_steps: 2
  log_every: 1
  eval_every: 20
sample:
  tokens: 0
YAML
recipe=(--config "$scratch/vlm.yaml")
"$g4moe" train "${recipe[@]}" "output.dir=$scratch/run" >"$scratch/train.out" 2>&1 && ok "image-text training runs" ||
  bad "image-text training runs: $(tail -3 "$scratch/train.out")"
python3 - "$scratch/run/metrics.jsonl" <<'PY' && ok "the loss falls and the eval loss is finite" || bad "the loss falls"
import json, math, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
losses = [l["loss"] for l in lines if "loss" in l]
evals = [l["eval_loss"] for l in lines if "eval_loss" in l]
assert len(losses) == 40 and all(math.isfinite(x) for x in losses), losses
assert sum(losses[-4:]) / 4 < 0.6 * sum(losses[:4]) / 4, losses
assert evals and all(math.isfinite(x) for x in evals), evals
print(f"     first 4 steps {sum(losses[:4]) / 4:.4f}, last 4 {sum(losses[-4:]) / 4:.4f}, eval {evals[-1]:.4f}")
PY
python3 - "$scratch/model/model.safetensors" "$scratch/run/checkpoint-40/model.safetensors" <<'PY' &&
import sys
from safetensors_bytes import tensors
before, after = tensors(sys.argv[1]), tensors(sys.argv[2])
assert sorted(before) == sorted(after), set(before) ^ set(after)
towers = [k for k in before if not k.startswith("model.language_model.")]
assert len(towers) > 20 and all(before[k] == after[k] for k in towers), "a tower tensor changed"
assert any(before[k] != after[k] for k in before if k.startswith("model.language_model.")), "nothing trained"
print(f"     {len(towers)} tower tensors unchanged, text model trained")
PY
  ok "the checkpoint keeps the frozen towers" || bad "the checkpoint keeps the frozen towers"

# train.vision: projection trains embed_vision only, tower the whole tower too; a run resumed from its
# checkpoint ends with the same bytes as the one that went on (the vision moments are in the optimizer file).
common=(train.eval_every=0 data.eval_fraction=0.0 train.steps=12 output.save_every=6)
"$g4moe" train "${recipe[@]}" "${common[@]}" train.vision=projection "output.dir=$scratch/projection" \
  >"$scratch/projection.out" 2>&1 || bad "train.vision=projection: $(tail -2 "$scratch/projection.out")"
"$g4moe" train "${recipe[@]}" "${common[@]}" train.vision=tower "output.dir=$scratch/tower" \
  >"$scratch/tower.out" 2>&1 || bad "train.vision=tower: $(tail -2 "$scratch/tower.out")"
"$g4moe" train "${recipe[@]}" "${common[@]}" train.vision=tower "output.dir=$scratch/tower_resumed" \
  --resume "$scratch/tower/checkpoint-6" >"$scratch/resumed.out" 2>&1 ||
  bad "train.vision=tower resumed: $(tail -2 "$scratch/resumed.out")"
python3 - "$scratch/model/model.safetensors" "$scratch/projection/checkpoint-12/model.safetensors" \
  "$scratch/tower/checkpoint-12/model.safetensors" "$scratch/tower_resumed/checkpoint-12/model.safetensors" <<'PY' &&
import sys
from safetensors_bytes import tensors
base, projection, tower, resumed = (tensors(p) for p in sys.argv[1:])
vision = [k for k in base if k.startswith("model.vision_tower.")]
embed = [k for k in base if k.startswith("model.embed_vision.")]
params = [k for k in vision if not k.endswith(("std_bias", "std_scale"))]
assert embed and all(projection[k] != base[k] for k in embed), "projection did not train"
assert all(projection[k] == base[k] for k in vision), "projection changed the tower"
assert all(tower[k] != base[k] for k in params + embed), "tower: some vision parameter did not train"
assert all(tower[k] == base[k] for k in vision if k not in params), "tower: a buffer changed"
assert resumed == tower, "the resumed run differs from the run that went on"
print(f"     projection: {len(embed)} trained, {len(vision)} unchanged; tower: {len(params) + len(embed)} trained; "
      "resumed run equal byte for byte")
PY
  ok "train.vision projection and tower; resume is exact" || bad "train.vision projection and tower"

# score with images against transformers' float64 run of the same rows (tests/fixtures/image_text,
# tools/make_image_text_fixture.py): a real photo through the C++ processor, the tower, the merge and the text
# model; logits within 1e-5 relative, the loss within 1e-5.
"$g4moe" score --model tests/fixtures/vision_tower --input tests/fixtures/image_text/input.json \
  --output "$scratch/image_text.safetensors" >"$scratch/score.json" 2>"$scratch/score.err" ||
  bad "score with images: $(cat "$scratch/score.err")"
python3 - "$scratch/image_text.safetensors" tests/fixtures/image_text/expected.safetensors "$scratch/score.json" <<'PY' &&
import json, math, sys
from safetensors_bytes import floats as read
ours, want = read(sys.argv[1])["logits"], read(sys.argv[2])
diff = math.sqrt(sum((a - b) ** 2 for a, b in zip(ours, want["logits"])))
rel = diff / math.sqrt(sum(b * b for b in want["logits"]))
loss = json.load(open(sys.argv[3]))["loss"]
assert len(ours) == len(want["logits"]) and math.isfinite(rel) and rel <= 1e-5, rel
assert abs(loss - want["loss"][0]) <= 1e-5 * abs(want["loss"][0]), (loss, want["loss"][0])
print(f"     logits {rel:.2e} relative to float64, loss {loss:.6f} (transformers {want['loss'][0]:.6f})")
PY
  ok "score with images matches transformers in float64" || bad "score with images matches transformers"

# Bad input: one line naming the image (or the data file and line), exit 2, no output directory.
expect_error() {  # expect_error NAME PATTERN TRAIN-ARGS...
  local name=$1 pattern=$2
  shift 2
  "$g4moe" train "${recipe[@]}" "output.dir=$scratch/out_$name" "$@" >"$scratch/$name.out" 2>"$scratch/$name.err"
  local rc=$?
  if [ $rc -eq 2 ] && grep -q -- "$pattern" "$scratch/$name.err" && [ "$(wc -l <"$scratch/$name.err")" -eq 1 ] &&
    [ ! -e "$scratch/out_$name" ]; then
    ok "$name: $(cat "$scratch/$name.err")"
  else
    bad "$name: rc $rc, $(head -c 300 "$scratch/$name.err")"
  fi
}
line() { echo "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image\", \"path\": \"$1\"}]}, {\"role\": \"model\", \"content\": \"x\"}]}"; }
{ line img/chelsea_420.jpg; line img/missing.png; } >"$scratch/data/missing.jsonl"
expect_error missing_image "cannot open image .*img/missing.png: No such file or directory (.*missing.jsonl:2)" \
  "data.path=$scratch/data/missing.jsonl"
head -c 3000 tests/fixtures/images/chelsea_420.jpg >"$scratch/data/img/cut.jpg"
line img/cut.jpg >"$scratch/data/corrupt.jsonl"
expect_error corrupt_image "img/cut.jpg: corrupt JPEG: .*(.*corrupt.jsonl:1)" "data.path=$scratch/data/corrupt.jsonl"
cp tests/fixtures/images/refused_cmyk.jpg "$scratch/data/img/"
line img/refused_cmyk.jpg >"$scratch/data/cmyk.jsonl"
expect_error cmyk_image "refused_cmyk.jpg: CMYK JPEG is not supported" "data.path=$scratch/data/cmyk.jsonl"
expect_error image_cut_by_truncation "has an image whose tokens end at .*beyond data.seq_len 32" data.seq_len=32
sed -e "s|path: $scratch/model|preset: tiny-moe|" "$scratch/vlm.yaml" >"$scratch/text.yaml"
recipe=(--config "$scratch/text.yaml")
expect_error text_only_model "the model takes no images (no vision_config) (.*train.jsonl:1)"
python3 -c "
import json
print(json.dumps({'messages': [{'role': 'user', 'content': 'hi'}, {'role': 'model', 'content': 'hello'}]}))" \
  >"$scratch/data/text_only.jsonl"
recipe=(--config "$scratch/vlm.yaml")
expect_error vision_without_images "train.vision is tower but no training line of .*text_only.jsonl has an image" \
  train.vision=tower "data.path=$scratch/data/text_only.jsonl" data.eval_fraction=0.0
echo "image_train_test: $failures failure(s)"
exit $((failures > 0))
