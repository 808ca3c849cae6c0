#!/usr/bin/env python3
"""CPU training-step throughput: g4moe against transformers 5.17 + PyTorch, same machine, same threads.

A benchmark, not a test. One step = forward + backward + AdamW over every parameter (the peer:
loss.backward(); optimizer.step(); optimizer.zero_grad()), fp32, random token ids, median of --repeat steps
after a warm-up. Two models: the built-in tiny-moe preset (`g4moe init`), and the mid-size 26B-A4B-width
configuration of cpu_forward_vs_torch.py (4 layers, 16 experts, vocabulary 32768).
Usage: python3 bench/cpu_train_vs_torch.py --g4moe build/g4moe --threads 16
"""
import argparse, json, os, subprocess, sys, tempfile, time

import torch
from transformers import Gemma4ForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_forward_vs_torch import mid_config  # noqa: E402


def time_torch(ckpt, batch, seq, repeat, **impl):
    model = Gemma4ForCausalLM.from_pretrained(ckpt, dtype=torch.float32, **impl).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)
    ids = torch.randint(0, model.config.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(1234))
    times = []
    for i in range(repeat + 1):
        t = time.perf_counter()
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--g4moe", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    work = tempfile.mkdtemp()
    tiny = os.path.join(work, "tiny")
    subprocess.run([a.g4moe, "init", "--preset", "tiny-moe", "--out", tiny], check=True, capture_output=True)
    torch.manual_seed(0)
    mid = os.path.join(work, "mid")
    Gemma4ForCausalLM(mid_config()).float().save_pretrained(mid)
    results = {"threads": a.threads, "torch": torch.__version__}
    for name, ckpt, batch, seq in [("tiny-moe", tiny, 8, 256), ("mid", mid, 1, 512)]:
        eager = time_torch(ckpt, batch, seq, a.repeat, attn_implementation="eager", experts_implementation="eager")
        default = time_torch(ckpt, batch, seq, a.repeat)
        line = subprocess.run([a.g4moe, "bench", "train", "--model", ckpt, "--batch", str(batch), "--seq", str(seq),
                               "--repeat", str(a.repeat)], env=env, check=True, capture_output=True, text=True).stdout
        g4 = json.loads(line)
        tokens = batch * seq
        results[name] = {"tokens_per_step": tokens,
                         "transformers_eager_tokens_per_s": tokens / eager,
                         "transformers_default_tokens_per_s": tokens / default,
                         "g4moe_tokens_per_s": g4["tokens_per_s"],
                         "ratio_vs_eager": g4["tokens_per_s"] / (tokens / eager),
                         "ratio_vs_default": g4["tokens_per_s"] / (tokens / default)}
    print(json.dumps(results, indent=2))
    if a.out:
        json.dump(results, open(os.path.join(a.out, "cpu_train_bench.json"), "w"), indent=2)


if __name__ == "__main__":
    sys.exit(main())
