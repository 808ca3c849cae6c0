#!/usr/bin/env bash
# serve_test.sh: `g4moe serve` on 127.0.0.1, driven by the real OpenAI Python client (tests/cli/serve_test.py:
# completions and chat, whole and streamed, 8 concurrent streams over 4 slots equal to their sequential
# results, stop strings, seeds, 400s), then a one-slot server with a queue of 1 that must answer 503 when more
# requests come, raw HTTP errors (bad JSON, unknown route), and shutdown on SIGTERM.
# Usage: serve_test.sh path/to/g4moe   (run from the repository root; scripts/setup.sh made venv-tests/)
set -u
g4moe="$1"
source "$(dirname "$0")/lib.sh"
python=${G4_TEST_PYTHON:-venv-tests/bin/python}
if ! "$python" -c "import openai" 2>/dev/null; then
  bad "the openai client is not installed in $python (run scripts/setup.sh)"
  finish serve_test
  exit 1
fi

# A model for the test tokenizer's 600 tokens.
model=$scratch/model
python3 -c "import json; c=json.load(open('tests/fixtures/moe_26b/config.json')); c['vocab_size']=600; json.dump(c, open('$scratch/config.json','w'))"
"$g4moe" init --config "$scratch/config.json" --out "$model" >/dev/null && cp tests/data/tokenizer/tokenizer.json "$model"/

# start_server LOG ARGS...: starts g4moe serve on a free port; sets $pid and $port.
start_server() {
  local log=$1
  shift
  "$g4moe" serve --model "$model" --port 0 "$@" 2>"$log" &
  pid=$!
  port=""
  for _ in $(seq 100); do
    port=$(grep -o 'http://127.0.0.1:[0-9]*' "$log" | sed 's/.*://')
    [ -n "$port" ] && return 0
    sleep 0.1
  done
  return 1
}

start_server "$scratch/serve.log" --max-batch 4 --max-context 64 --model-name tiny
if [ -z "$port" ]; then
  bad "the server did not start: $(cat "$scratch/serve.log")"
else
  "$python" tests/cli/serve_test.py "http://127.0.0.1:$port/v1" tiny "$g4moe" "$model"
  failures=$((failures + $?))
  # Raw HTTP: a broken body and an unknown route get JSON errors.
  code=$(curl -s -o "$scratch/body" -w '%{http_code}' "http://127.0.0.1:$port/v1/completions" -d '{"prompt": ')
  [ "$code" = 400 ] && grep -q '"invalid_request_error"' "$scratch/body" && pass "400 on broken JSON" || bad "broken JSON: $code $(cat "$scratch/body")"
  code=$(curl -s -o "$scratch/body" -w '%{http_code}' "http://127.0.0.1:$port/v2/nothing")
  [ "$code" = 404 ] && grep -q '"error"' "$scratch/body" && pass "404 on an unknown route" || bad "unknown route: $code"
  kill -TERM "$pid"
  wait "$pid" && grep -q "stopped" "$scratch/serve.log" && pass "SIGTERM stops the server (exit 0)" || bad "SIGTERM: $(tail -2 "$scratch/serve.log")"
fi

# One slot, one place in the queue: of 6 simultaneous long requests at least one gets 503, and every other
# one completes.
start_server "$scratch/busy.log" --max-batch 1 --queue 1 --max-context 64 --model-name tiny
"$python" - "http://127.0.0.1:$port/v1" <<'PY' && pass "503 when the queue is full" || bad "503 when the queue is full"
import concurrent.futures, sys, openai
client = openai.OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0, timeout=120)
def one(i):
    try:
        r = client.completions.create(model="tiny", prompt="the cat " * 3, max_tokens=40, temperature=0,
                                      extra_body={"ignore_eos": True})
        return r.usage.completion_tokens
    except openai.APIStatusError as e:
        return e.status_code
with concurrent.futures.ThreadPoolExecutor(6) as pool:
    results = list(pool.map(one, range(6)))
print("     results:", results)
assert 503 in results and all(r == 40 for r in results if r != 503), results
assert sum(1 for r in results if r != 503) >= 2, results
PY
kill -TERM "$pid"; wait "$pid"

# Options that cannot work are one-line errors.
expect_error "port in use" "cannot listen" "$g4moe" serve --model "$model" --port 1 --host 203.0.113.1
expect_error "KV cache too large" "the KV cache needs about" "$g4moe" serve --model "$model" --max-context 4000000000000
finish serve_test
