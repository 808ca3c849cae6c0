"""Drives `g4moe serve` with the real OpenAI Python client (openai 1.109.1, scripts/setup.sh installs it).

Usage: serve_test.py BASE_URL MODEL_NAME G4MOE MODEL_DIR   (serve_test.sh starts the server first)
Every check prints "ok   ..." or "FAIL ..."; the exit code is the number of failures.
"""
import concurrent.futures
import json
import subprocess
import sys

import openai

base, name, g4moe, model_dir = sys.argv[1:5]
client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=120)
failures = 0


def check(label, condition, detail=""):
    global failures
    print(("ok   " if condition else "FAIL ") + label + ("" if condition else f": {detail}"))
    failures += 0 if condition else 1


def greedy_completion(prompt, max_tokens=12, **kw):
    return client.completions.create(model=name, prompt=prompt, max_tokens=max_tokens, temperature=0, **kw)


def streamed_completion(prompt, max_tokens=12):
    text, finish = "", None
    for chunk in client.completions.create(model=name, prompt=prompt, max_tokens=max_tokens, temperature=0,
                                           stream=True):
        text += chunk.choices[0].text
        finish = chunk.choices[0].finish_reason or finish
    return text, finish


models = client.models.list()
check("/v1/models lists the model", [m.id for m in models.data] == [name], models)

# The server's greedy text equals `g4moe generate`'s for the same prompt (one engine behind both).
prompts = ["the small cat", "a dog near the river", "Hello, World!", "sees", "the river sees the cat near"]
cli = subprocess.run([g4moe, "generate", "--model", model_dir, "--prompt", prompts[0], "--max-new-tokens", "12",
                      "--temperature", "0", "--json", "--ignore-eos"], capture_output=True, text=True)
cli_text = json.loads(cli.stdout)["text"] if cli.returncode == 0 else None
one = greedy_completion(prompts[0], extra_body={"ignore_eos": True})
check("completion equals g4moe generate", one.choices[0].text == cli_text, (one.choices[0].text, cli_text))
check("usage counts tokens", one.usage.completion_tokens == 12 and one.usage.prompt_tokens > 1, one.usage)

# Streaming gives the same text, in pieces, with a finish reason.
sequential = [greedy_completion(p) for p in prompts]
text, finish = streamed_completion(prompts[1])
check("streamed completion equals the whole one", text == sequential[1].choices[0].text,
      (text, sequential[1].choices[0].text))
check("stream ends with a finish reason", finish in ("stop", "length"), finish)

# Concurrent streams (more than the server's 4 slots): each equals its sequential result.
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    together = list(pool.map(lambda p: streamed_completion(p)[0], prompts + prompts[:3]))
want = [r.choices[0].text for r in sequential + sequential[:3]]
check("8 concurrent streams equal their sequential results", together == want, (together, want))

# Chat, whole and streamed, with usage in the stream.
messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "the small cat"},
            {"role": "assistant", "content": "sees the dog"}, {"role": "user", "content": "near the river?"}]
chat = client.chat.completions.create(model=name, messages=messages, max_tokens=10, temperature=0)
check("chat completion", chat.choices[0].message.role == "assistant" and chat.usage.completion_tokens >= 1, chat)
pieces, usage = [], None
for chunk in client.chat.completions.create(model=name, messages=messages, max_tokens=10, temperature=0,
                                            stream=True, stream_options={"include_usage": True}):
    if chunk.choices:
        pieces.append(chunk.choices[0].delta.content or "")
    if chunk.usage:
        usage = chunk.usage
check("streamed chat equals the whole one", "".join(pieces) == chat.choices[0].message.content,
      ("".join(pieces), chat.choices[0].message.content))
check("usage chunk", usage is not None and usage.total_tokens == chat.usage.total_tokens, usage)

# A stop string cuts the text before it and ends with finish_reason "stop".
full = sequential[0].choices[0].text
cut = full[3:6] if len(full) >= 6 else None
if cut:
    stopped = greedy_completion(prompts[0], stop=[cut])
    check("stop string", stopped.choices[0].text == full[:full.index(cut)]
          and stopped.choices[0].finish_reason == "stop", (stopped.choices[0], full, cut))
else:
    check("stop string", False, f"greedy text too short: {full!r}")

# Seeded sampling repeats; token-id prompts work.
a = client.completions.create(model=name, prompt="the cat", max_tokens=10, temperature=1.2, seed=5)
b = client.completions.create(model=name, prompt="the cat", max_tokens=10, temperature=1.2, seed=5)
check("seeded sampling repeats", a.choices[0].text == b.choices[0].text, (a.choices[0].text, b.choices[0].text))
ids = client.completions.create(model=name, prompt=[2, 597, 469], max_tokens=4, temperature=0)
check("token-id prompt", ids.usage.prompt_tokens == 3, ids.usage)

# Bad requests: 400 with an OpenAI error body, the server still answering afterwards.
for label, kwargs in [("max_tokens beyond the context", {"prompt": "x", "max_tokens": 10**6}),
                      ("temperature out of range", {"prompt": "x", "max_tokens": 2, "temperature": 7}),
                      ("token id outside the vocabulary", {"prompt": [2, 10**7], "max_tokens": 2}),
                      ("n > 1", {"prompt": "x", "max_tokens": 2, "n": 2})]:
    try:
        client.completions.create(model=name, **kwargs)
        check(f"400: {label}", False, "accepted")
    except openai.BadRequestError as e:
        check(f"400: {label}", e.status_code == 400 and e.body and e.body.get("message"), e)
try:
    client.chat.completions.create(model=name, messages=[{"role": "robot", "content": "hi"}], max_tokens=2)
    check("400: unknown chat role", False, "accepted")
except openai.BadRequestError as e:
    check("400: unknown chat role", "robot" in str(e), e)
check("still serving after bad requests", greedy_completion(prompts[3]).choices[0].text == sequential[3].choices[0].text)
sys.exit(failures)
