"""PyTorch's scaled_dot_product_attention at the shapes of g4_bench_flash (bench/flash_attention_bench.cu), for
comparison: bf16, batch 1, scale 1.0, GQA through enable_gqa; causal via is_causal, the sliding window via an
explicit boolean mask. Same FLOP count (visible pairs only; forward+backward = 3.5x the forward).

    python3 bench/flash_attention_torch.py [--seq 4096,16384] [--iters 10]
"""
import argparse

import torch
import torch.nn.functional as F


def median_ms(fn, iters):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq", default="4096,16384")
    ap.add_argument("--iters", type=int, default=10)
    args = ap.parse_args()
    print(f"{'D':5} {'Nq':4} {'Nkv':4} {'window':7} {'S':7} {'fwd_ms':>10} {'fwd_TF/s':>10} {'f+b_ms':>10} {'f+b_TF/s':>10}")
    for D, Nq, Nkv, window in [(256, 16, 8, 1024), (512, 16, 2, 0)]:
        for S in [int(s) for s in args.seq.split(",")]:
            g = torch.Generator(device="cuda").manual_seed(0)
            q = (torch.randn(1, Nq, S, D, device="cuda", generator=g) * 0.3).bfloat16().requires_grad_()
            k = (torch.randn(1, Nkv, S, D, device="cuda", generator=g) * 0.3).bfloat16().requires_grad_()
            v = torch.randn(1, Nkv, S, D, device="cuda", generator=g).bfloat16().requires_grad_()
            i = torch.arange(S, device="cuda")
            if window:
                mask = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - window)
                kw = dict(attn_mask=mask)
                pairs = float(mask.sum())
            else:
                kw = dict(is_causal=True)
                pairs = S * (S + 1) / 2
            flops = 4.0 * D * pairs * Nq
            try:
                out = F.scaled_dot_product_attention(q, k, v, scale=1.0, enable_gqa=True, **kw)
                dout = torch.randn_like(out)
                fwd = lambda: F.scaled_dot_product_attention(q, k, v, scale=1.0, enable_gqa=True, **kw)

                def fb():
                    o = F.scaled_dot_product_attention(q, k, v, scale=1.0, enable_gqa=True, **kw)
                    torch.autograd.grad(o, (q, k, v), dout)

                f = median_ms(fwd, args.iters)
                fbm = median_ms(fb, args.iters)
                print(f"{D:<5} {Nq:<4} {Nkv:<4} {window:<7} {S:<7} {f:10.3f} {flops / f * 1e-9:10.1f} {fbm:10.3f} "
                      f"{3.5 * flops / fbm * 1e-9:10.1f}", flush=True)
            except Exception as e:  # noqa: BLE001 (report and go on: some backends refuse D=512 or run out of memory)
                print(f"{D:<5} {Nq:<4} {Nkv:<4} {window:<7} {S:<7} failed: {str(e).splitlines()[0][:100]}", flush=True)
            del q, k, v
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
