#!/usr/bin/env python3
"""CPU forward throughput: g4moe against transformers 5.17 on PyTorch, same machine, same thread count.

A benchmark, not a test. It builds a mid-size Gemma 4 MoE checkpoint (26B-A4B widths: hidden 2816, 16 query
heads, 8/2 KV heads, head dim 256/512 with K=V on the full layer, dense MLP 2112, experts of width 704, top-8;
but 4 layers, 16 experts and a 32768-token vocabulary), saves it in fp32, then times
  * transformers Gemma4ForCausalLM, fp32, torch.inference_mode, eager attention + eager experts, and the
    defaults (sdpa attention, default experts implementation),
  * `g4moe bench forward` on the same checkpoint,
with the same number of threads, and checks that g4moe's logits agree with transformers'.
Usage: python3 bench/cpu_forward_vs_torch.py --g4moe build/g4moe --threads 16 [--seq 512] [--out DIR]
"""
import argparse, json, os, subprocess, sys, tempfile, time

import torch
import transformers
from transformers import Gemma4ForCausalLM, Gemma4TextConfig


def mid_config():
    return Gemma4TextConfig(
        vocab_size=32768, hidden_size=2816, intermediate_size=2112, num_hidden_layers=4,
        num_attention_heads=16, num_key_value_heads=8, head_dim=256, global_head_dim=512,
        num_global_key_value_heads=2, attention_k_eq_v=True,
        layer_types=["sliding_attention"] * 3 + ["full_attention"], sliding_window=1024,
        enable_moe_block=True, num_experts=16, top_k_experts=8, moe_intermediate_size=704,
        hidden_size_per_layer_input=0, final_logit_softcapping=30.0, tie_word_embeddings=True)


def time_torch(model, ids, repeat):
    times = []
    with torch.inference_mode():
        model(input_ids=ids, use_cache=False)  # warm-up
        for _ in range(repeat):
            t = time.perf_counter()
            out = model(input_ids=ids, use_cache=False)
            times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2], out.logits


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--g4moe", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    work = tempfile.mkdtemp()
    cfg = mid_config()
    model = Gemma4ForCausalLM(cfg).float().eval()
    with torch.no_grad():  # move norms and scales off 1 so every parameter matters
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    ckpt = os.path.join(work, "mid")
    model.save_pretrained(ckpt)
    ids = torch.randint(0, cfg.vocab_size, (1, a.seq), generator=torch.Generator().manual_seed(1234))
    results = {"machine": {"cpu_threads": a.threads, "torch": torch.__version__, "transformers": transformers.__version__},
               "seq": a.seq}

    eager = Gemma4ForCausalLM.from_pretrained(ckpt, dtype=torch.float32, attn_implementation="eager",
                                              experts_implementation="eager").eval()
    t_eager, ref_logits = time_torch(eager, ids, a.repeat)
    results["transformers_eager"] = {"median_s": t_eager, "tokens_per_s": a.seq / t_eager}
    del eager
    default = Gemma4ForCausalLM.from_pretrained(ckpt, dtype=torch.float32).eval()
    try:
        t_default, _ = time_torch(default, ids, a.repeat)
        results["transformers_default"] = {"median_s": t_default, "tokens_per_s": a.seq / t_default,
                                           "attn": default.config._attn_implementation,
                                           "experts": getattr(default.config, "_experts_implementation", None)}
    except Exception as e:  # noqa: BLE001 - report, do not hide
        results["transformers_default"] = {"error": repr(e)[:300]}
    del default

    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OPENBLAS_NUM_THREADS=str(a.threads))
    input_json = os.path.join(work, "input.json")
    json.dump({"input_ids": ids.tolist()}, open(input_json, "w"))
    logits_path = os.path.join(work, "logits.safetensors")
    subprocess.run([a.g4moe, "score", "--model", ckpt, "--input", input_json, "--output", logits_path],
                   env=env, check=True, capture_output=True)
    from safetensors.torch import load_file
    g4_logits = load_file(logits_path)["logits"]
    rel = ((g4_logits - ref_logits).norm() / ref_logits.norm()).item()
    line = subprocess.run([a.g4moe, "bench", "forward", "--model", ckpt, "--seq", str(a.seq), "--repeat",
                           str(a.repeat)], env=env, check=True, capture_output=True, text=True).stdout
    g4 = json.loads(line)
    results["g4moe"] = g4
    results["g4moe_vs_transformers_logits_rel_err"] = rel
    results["ratio_vs_eager"] = g4["tokens_per_s"] / results["transformers_eager"]["tokens_per_s"]
    if "tokens_per_s" in results["transformers_default"]:
        results["ratio_vs_default"] = g4["tokens_per_s"] / results["transformers_default"]["tokens_per_s"]
    print(json.dumps(results, indent=2))
    if a.out:
        json.dump(results, open(os.path.join(a.out, "cpu_forward_bench.json"), "w"), indent=2)


if __name__ == "__main__":
    sys.exit(main())
