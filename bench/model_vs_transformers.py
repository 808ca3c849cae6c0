"""transformers 5.17 on the model shapes of `g4moe bench train|forward --preset gemma-4-26b-a4b --layers N`,
for the same-call comparison in docs/BENCHMARKS.md: bf16 weights, sdpa attention, grouped_mm experts, batch 1,
random token ids. Prints one JSON line per measurement (median of --repeat after --warmup, CUDA events).

  train: forward + backward (as g4moe's --no-optimizer), and forward + backward + torch.optim.AdamW (fused,
         moments in the parameters' bf16, as a plain bf16 HF run keeps them) when it fits;
  forward: the forward pass under torch.no_grad (prefill).
Peak memory is torch.cuda.max_memory_allocated over the timed steps.

    python3 bench/model_vs_transformers.py train --layers 6 --seq 4096
    python3 bench/model_vs_transformers.py forward --layers 30 --seq 8192
"""
import argparse
import json
import statistics

import torch
from transformers.models.gemma4 import configuration_gemma4 as C, modeling_gemma4 as M


def config(layers):
    types = ["full_attention" if l % 6 == 5 else "sliding_attention" for l in range(layers)]
    cfg = C.Gemma4TextConfig(
        vocab_size=262144, hidden_size=2816, intermediate_size=2112, num_hidden_layers=layers,
        num_attention_heads=16, num_key_value_heads=8, head_dim=256, global_head_dim=512,
        num_global_key_value_heads=2, attention_k_eq_v=True, sliding_window=1024, layer_types=types,
        enable_moe_block=True, num_experts=128, top_k_experts=8, moe_intermediate_size=704,
        hidden_size_per_layer_input=0, final_logit_softcapping=30.0, max_position_embeddings=262144)
    cfg._attn_implementation = "sdpa"
    cfg._experts_implementation = "grouped_mm"
    return cfg


def timed(fn, warmup, repeat):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeat):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    return statistics.median(times), torch.cuda.max_memory_allocated()


def report(what, seq, seconds, peak):
    print(json.dumps({"what": what, "seq": seq, "median_s": seconds, "tokens_per_s": seq / seconds,
                      "peak_device_bytes": peak}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["train", "forward"])
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = M.Gemma4ForCausalLM(config(args.layers))
    torch.set_default_dtype(torch.float32)
    ids = torch.randint(3, 262144, (1, args.seq), device="cuda")
    name = f"transformers {args.layers}L"
    if args.mode == "forward":
        model.eval()

        def forward():
            with torch.no_grad():
                model(input_ids=ids, use_cache=False)

        report(f"{name} forward", args.seq, *timed(forward, args.warmup, args.repeat))
        return
    model.train()

    def step():
        model(input_ids=ids, labels=ids, use_cache=False).loss.backward()

    report(f"{name} forward+backward", args.seq, *timed(step, args.warmup, args.repeat))
    try:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)

        def train_step():
            step()
            opt.step()
            opt.zero_grad(set_to_none=False)

        report(f"{name} train step (AdamW, bf16 moments)", args.seq, *timed(train_step, args.warmup, args.repeat))
    except torch.OutOfMemoryError as e:
        print(json.dumps({"what": f"{name} train step (AdamW, bf16 moments)", "error": str(e)[:160]}))


if __name__ == "__main__":
    main()
