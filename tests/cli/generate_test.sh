#!/usr/bin/env bash
# generate_test.sh: `g4moe generate` against transformers 5.17's generate (tests/fixtures/generate/, made by
# tools/make_generate_fixtures.py in float64): greedy tokens equal, token for token, on prompts longer than the
# sliding window, for a MoE k_eq_v model, an E2B-shaped model (KV-shared layers, per-layer inputs) and a dense
# k_eq_v model, with and without repetition penalty and min_new_tokens, prompts batched together and one by one,
# and with the prompt prefilled in chunks smaller than the window. Then the options' errors.
# Usage: generate_test.sh path/to/g4moe   (run from the repository root)
set -u
g4moe="$1"
source "$(dirname "$0")/lib.sh"

for case in moe_26b dense_e2b dense_31b; do
  fixture=tests/fixtures/generate/$case.json
  python3 - "$fixture" "$scratch" <<'PY'
import json, sys
f = json.load(open(sys.argv[1]))
json.dump({"input_ids": f["input_ids"]}, open(f"{sys.argv[2]}/prompts.json", "w"))
for i, p in enumerate(f["input_ids"]):
    json.dump({"input_ids": [p]}, open(f"{sys.argv[2]}/prompt{i}.json", "w"))
with open(f"{sys.argv[2]}/runs.txt", "w") as out:
    for i, run in enumerate(f["runs"]):
        s = run["settings"]
        flags = [f"--max-new-tokens {s['max_new_tokens']}"]
        if "min_new_tokens" in s: flags.append(f"--min-new-tokens {s['min_new_tokens']}")
        if "repetition_penalty" in s: flags.append(f"--repetition-penalty {s['repetition_penalty']}")
        out.write(f"{i} {' '.join(flags)}\n")
PY
  model=tests/fixtures/$case
  while read -r run flags; do
    # shellcheck disable=SC2086  # flags are words
    for variant in batched chunked single; do
      case $variant in
        batched) "$g4moe" generate --model "$model" --input "$scratch/prompts.json" $flags --temperature 0 --json \
          >"$scratch/out.json" 2>"$scratch/err" ;;
        chunked) "$g4moe" generate --model "$model" --input "$scratch/prompts.json" $flags --temperature 0 --json \
          --prefill-chunk 3 >"$scratch/out.json" 2>"$scratch/err" ;;
        single) for i in 0 1 2 3; do
            "$g4moe" generate --model "$model" --input "$scratch/prompt$i.json" $flags --temperature 0 --json \
              2>"$scratch/err" || break
          done | python3 -c "import json,sys; print(json.dumps({'output_ids': [json.loads(l)['output_ids'][0] for l in sys.stdin]}))" \
            >"$scratch/out.json" ;;
      esac
      python3 - "$fixture" "$run" "$scratch/out.json" <<'PY' && pass "$case run $run ($flags) $variant" || bad "$case run $run ($flags) $variant: $(head -c 300 "$scratch/err")"
import json, sys
want = json.load(open(sys.argv[1]))["runs"][int(sys.argv[2])]["output_ids"]
got = json.load(open(sys.argv[3]))["output_ids"]
assert got == want, f"transformers {want}\n     g4moe        {got}"
PY
    done
  done <"$scratch/runs.txt"
done

# Sampling: the same seed gives the same tokens, another seed other tokens (over 3 rows of 12 tokens), and every
# row is as long as asked when the stop token is ignored.
m=tests/fixtures/moe_26b
python3 -c "import json; json.dump({'input_ids': json.load(open('tests/fixtures/generate/moe_26b.json'))['input_ids'][:3]}, open('$scratch/three.json', 'w'))"
"$g4moe" generate --model $m --input "$scratch/three.json" --max-new-tokens 12 --temperature 1.5 --seed 7 --ignore-eos --json >"$scratch/s1" 2>/dev/null
"$g4moe" generate --model $m --input "$scratch/three.json" --max-new-tokens 12 --temperature 1.5 --seed 7 --ignore-eos --json >"$scratch/s2" 2>/dev/null
"$g4moe" generate --model $m --input "$scratch/three.json" --max-new-tokens 12 --temperature 1.5 --seed 8 --ignore-eos --json >"$scratch/s3" 2>/dev/null
python3 - "$scratch/s1" "$scratch/s2" "$scratch/s3" <<'PY' && pass "sampling: seeded, reproducible, lengths" || bad "sampling: seeded, reproducible, lengths"
import json, sys
a, b, c = (json.load(open(p))["output_ids"] for p in sys.argv[1:])
assert a == b, (a, b)
assert a != c, "seeds 7 and 8 gave the same 36 tokens"
assert [len(r) for r in a] == [12, 12, 12], a
PY

# --prompt: text through the checkpoint's tokenizer, streamed; --json adds the text.
# A model initialised for the test tokenizer's 600 tokens (the fixtures have 96).
tok=$scratch/tok_model
python3 -c "import json; c=json.load(open('$m/config.json')); c['vocab_size']=600; json.dump(c, open('$scratch/config600.json','w'))"
"$g4moe" init --config "$scratch/config600.json" --out "$tok" >/dev/null && cp tests/data/tokenizer/tokenizer.json "$tok"/
"$g4moe" generate --model "$tok" --prompt "the small cat" --max-new-tokens 5 --temperature 0 --json >"$scratch/p.json" 2>/dev/null &&
  python3 -c "import json,sys; d=json.load(open('$scratch/p.json')); assert len(d['output_ids'][0]) >= 1 and isinstance(d['text'], str)" &&
  pass "--prompt --json" || bad "--prompt --json: $(cat "$scratch/p.json")"
"$g4moe" generate --model "$tok" --prompt "the small cat" --max-new-tokens 5 --temperature 0 >"$scratch/p.txt" 2>/dev/null &&
  head -c 13 "$scratch/p.txt" | grep -q "^the small cat" && pass "--prompt streams text" || bad "--prompt streams text: $(cat "$scratch/p.txt")"

# --chat: two turns on stdin, each answered (streamed after "model> "), the second in the context of the first
# (its answer differs from the same question asked alone).
printf 'the small cat\nnear the river?\n' | "$g4moe" generate --model "$tok" --chat --system "Be brief." --max-new-tokens 6 \
  --temperature 0 >"$scratch/chat.txt" 2>/dev/null
printf 'near the river?\n' | "$g4moe" generate --model "$tok" --chat --system "Be brief." --max-new-tokens 6 \
  --temperature 0 >"$scratch/chat1.txt" 2>/dev/null
python3 - "$scratch/chat.txt" "$scratch/chat1.txt" <<'PY' && pass "--chat: two turns, with context" || bad "--chat: $(head -c 300 "$scratch/chat.txt")"
import sys
two, one = (open(p, encoding="utf-8", errors="replace").read().split("model> ")[1:] for p in sys.argv[1:])
assert len(two) == 2 and len(one) == 1, (two, one)
assert two[1].split("\n")[0] != one[0].split("\n")[0], (two, one)
PY

# Errors: one line, exit 2.
printf '{"input_ids": [[2, 5], []]}' >"$scratch/empty_row.json"
expect_error "empty prompt row" "row 1 must be a non-empty list" "$g4moe" generate --model $m --input "$scratch/empty_row.json" --max-new-tokens 2
printf '{"input_ids": [[2, 99999]]}' >"$scratch/oov.json"
expect_error "token outside the vocabulary" "token id 99999 at input_ids\[0\]\[1\] is out of range" "$g4moe" generate --model $m --input "$scratch/oov.json" --max-new-tokens 2
printf '{"input_ids": [[2, 5]], "labels": [[2, 5]]}' >"$scratch/extra.json"
expect_error "unknown field" 'unknown field "labels"' "$g4moe" generate --model $m --input "$scratch/extra.json" --max-new-tokens 2
printf '{"input_ids": [[2, 5]' >"$scratch/broken.json"
expect_error "broken JSON" "broken.json" "$g4moe" generate --model $m --input "$scratch/broken.json" --max-new-tokens 2
expect_error "negative temperature" "temperature must be > 0" "$g4moe" generate --model $m --input "$scratch/three.json" --max-new-tokens 2 --temperature -1
expect_error "top-p out of range" "top_p must lie in (0, 1]" "$g4moe" generate --model $m --input "$scratch/three.json" --max-new-tokens 2 --top-p 1.5
expect_error "min > max new tokens" "min_new_tokens (5) must lie in" "$g4moe" generate --model $m --input "$scratch/three.json" --max-new-tokens 2 --min-new-tokens 5
expect_error "input and prompt" "exactly one of --input" "$g4moe" generate --model $m --input "$scratch/three.json" --prompt hi --max-new-tokens 2
cp -r $m "$scratch/badgen" && printf '{"eos_token_id": "one"}' >"$scratch/badgen/generation_config.json"
expect_error "bad generation_config.json" "generation_config.json" "$g4moe" generate --model "$scratch/badgen" --input "$scratch/three.json" --max-new-tokens 2
expect_error "context too long for memory" "the KV cache needs about" "$g4moe" generate --model $m --input "$scratch/three.json" --max-new-tokens 4000000000000
finish generate_test
