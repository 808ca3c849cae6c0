#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer, with ASan + UBSan) of every parser of outside input: safetensors headers,
# config.json, score and generate input, generation_config.json, OpenAI API request bodies, YAML recipes, JSONL training data, tokenizer.json, JPEG and PNG images, and a training checkpoint's
# resume files (trainer_state.json, optimizer.safetensors). Each target runs for
# FUZZ_SECONDS (default 20) from seeds taken from the repository's own files; a finding (crash, sanitizer report,
# an exception other than a one-line g4::Error) fails the script and leaves the input in build-fuzz/findings/.
# Usage: bash scripts/fuzz.sh [target ...]      (targets: safetensors config score_input generation_input openai_request recipe dataset tokenizer trainer_state
# optimizer_state image)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
seconds=${FUZZ_SECONDS:-20}
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(safetensors config score_input generation_input openai_request recipe dataset tokenizer trainer_state optimizer_state image)

CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DG4MOE_CUDA=OFF \
  -DG4MOE_TESTS=OFF -DG4MOE_FUZZ=ON >/dev/null
cmake --build build-fuzz --parallel "$(nproc)" --target g4_fuzzers

# Seeds: valid inputs of each kind (the fuzzer mutates from there).
corpus=build-fuzz/corpus
rm -rf "$corpus" && mkdir -p "$corpus"/{safetensors,config,score_input,generation_input,openai_request,recipe,dataset,tokenizer,trainer_state,optimizer_state,image} build-fuzz/findings
python3 - "$corpus/safetensors/tiny.safetensors" <<'PY'
import json, struct, sys
header = {"a.weight": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 12]},
          "b": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]}, "__metadata__": {"format": "pt"}}
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + bytes(range(20)))
PY
cp tests/fixtures/moe_26b/config.json "$corpus/config/moe.json"
cp tests/fixtures/released_layout/config.json "$corpus/config/released.json"
cp tests/fixtures/moe_26b/input.json "$corpus/score_input/plain.json"
cp tests/fixtures/moe_padding/input.json "$corpus/score_input/padding.json"
cp tests/fixtures/moe_packed/input.json "$corpus/score_input/packed.json"
cp tests/fixtures/image_text/input.json "$corpus/score_input/images.json"
python3 -c "import json; json.dump({'input_ids': json.load(open('tests/fixtures/generate/moe_26b.json'))['input_ids']}, open('$corpus/generation_input/ragged.json', 'w'))"
cp tests/fixtures/dense_e2b/generation_config.json "$corpus/generation_input/"
printf '%s' '{"model": "m", "prompt": "Once upon", "max_tokens": 8, "stop": ["\\n", "end"], "stream": true, "temperature": 0.7, "top_p": 0.9, "seed": 3}' >"$corpus/openai_request/completion.json"
printf '%s' '{"model": "m", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]}], "max_tokens": 4, "stream_options": {"include_usage": true}, "chat_template_kwargs": {"enable_thinking": true}}' >"$corpus/openai_request/chat.json"
printf '%s' '{"eos_token_id": [1, 106], "do_sample": true, "top_k": 64, "top_p": 0.95, "temperature": 1.0}' >"$corpus/generation_input/released.json"
cp recipes/tiny_moe.yaml "$corpus/recipe/"
head -n 5 data/tiny_corpus.jsonl >"$corpus/dataset/text.jsonl"
printf '%s\n' '{"input_ids": [5, 6, 7, 8]}' \
  '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}' \
  '{"prompt": "2 + 2 =", "completion": " 4"}' >"$corpus/dataset/ids_chat_prompt.jsonl"
printf 'a first paragraph\nof two lines\n\n  \nthe second one\n' >"$corpus/dataset/paragraphs.txt"
cp tests/data/tokenizer/tokenizer.json "$corpus/tokenizer/"
for f in camera_1bit.png astronaut_tiny.png chelsea_strip_tall.jpg astronaut_exif3.jpg coffee_palette.png refused_cmyk.jpg \
  refused_gray16.png; do cp "tests/fixtures/images/$f" "$corpus/image/"; done
printf '%s' '{"step": 6, "data_cursor": 48, "tokens_seen": 6144.0, "optimizer_steps": 6, "model_seed": 1234,
 "data_seed": 0, "recipe": {"data.seq_len": 128, "train.batch_size": 8}}' >"$corpus/trainer_state/state.json"
python3 - "$corpus/optimizer_state" <<'PY'
import json, struct, sys
def image(names):
    header, blobs, offset = {}, b"", 0
    for name, shape in names:
        n = 4 * (shape[0] * (shape[1] if len(shape) > 1 else 1))
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + n]}
        blobs += struct.pack("<%df" % (n // 4), *[0.5] * (n // 4))
        offset += n
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blobs
moments = [(k + "." + p, s) for p, s in (("a", [2, 3]), ("b", [4])) for k in ("exp_avg", "exp_avg_sq")]
open(sys.argv[1] + "/fp32.safetensors", "wb").write(image(moments))
open(sys.argv[1] + "/bf16.safetensors", "wb").write(image(moments + [("master.a", [2, 3]), ("master.b", [4])]))
PY

for t in "${targets[@]}"; do
  echo "== fuzz_$t for ${seconds}s"
  set +e
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    build-fuzz/fuzz/fuzz_"$t" -max_total_time="$seconds" -max_len=131072 -timeout=10 -rss_limit_mb=4096 \
    -print_final_stats=1 -artifact_prefix=build-fuzz/findings/"$t"- "$corpus/$t" >build-fuzz/fuzz_"$t".log 2>&1
  status=$?
  set -e
  grep -E "^(stat::number_of_executed_runs|stat::new_units_added|Done )" build-fuzz/fuzz_"$t".log || true
  if [ "$status" -ne 0 ]; then
    grep -E -A12 "^(==[0-9]+==|a parser|g4::Error message)" build-fuzz/fuzz_"$t".log | head -40 >&2
    echo "fuzz_$t: finding (exit $status); log build-fuzz/fuzz_$t.log, input in build-fuzz/findings/" >&2
    exit 1
  fi
done
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, no findings"
