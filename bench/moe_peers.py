"""Times the PyTorch peers of g4moe's CUDA MoE experts layer on the same GPU and the same routing, in the same call.

Peers (26B-A4B shapes: H 2816, I 704, E 128, top-8): the bf16 dense matmul peak (8192^3, torch), a PyTorch version of
NeMo's GroupedExperts torch_mm path (permute, torch._grouped_mm, weighted GEGLU, torch._grouped_mm, fp32 index_add),
and transformers' Gemma4TextExperts with the grouped_mm and eager experts implementations (eager at 4096 tokens only).
Routing: read from --routing-dir (written by g4_bench_moe: {gate,balanced}_T{T}_idx.bin int32 [T,8] and _w.bin fp32),
so that both sides time the same expert loads. FLOPs: forward 2 T K 3 I H, forward+backward 3x.

    python3 bench/moe_peers.py --routing-dir /tmp/g4routing [--tokens 4096,16384] [--json out.json]
"""
import argparse, json, math, os, statistics, sys

import numpy as np
import torch
import torch.nn.functional as F

H, I, E, K = 2816, 704, 128, 8
dev, bf = "cuda", torch.bfloat16
res = {}


def timeit(fn, warm=3, iters=10):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); torch.cuda.synchronize()
        ts.append(a.elapsed_time(b))
    return statistics.median(ts)


def record(k, v):
    res[k] = v
    print(f"{k:52s} {v:10.4f}" if isinstance(v, float) else f"{k:52s} {v}", flush=True)


def nemo_torch_mm(x, w, idx, Wgu, Wd):
    """NeMo GroupedExperts torch_mm path (note section 4.3), single rank, no mask."""
    T = x.shape[0]
    flat = idx.reshape(-1)
    tok = torch.arange(T, device=dev).repeat_interleave(K)
    order = torch.argsort(flat, stable=True)
    st, sw = tok[order], w.reshape(-1)[order].float()
    offs = torch.cumsum(torch.bincount(flat, minlength=E), 0).to(torch.int32)
    h = torch._grouped_mm(x[st], Wgu, offs=offs)
    g, u = h.chunk(2, -1)
    a = (F.gelu(g.float(), approximate="tanh") * u.float() * sw[:, None]).to(bf)
    o = torch._grouped_mm(a, Wd, offs=offs)
    return torch.zeros(T, H, device=dev, dtype=torch.float32).index_add_(0, st, o.float()).to(bf)


def load_routing(d, kind, T):
    if d and os.path.exists(os.path.join(d, f"{kind}_T{T}_idx.bin")):
        idx = np.fromfile(os.path.join(d, f"{kind}_T{T}_idx.bin"), dtype=np.int32).reshape(T, K)
        w = np.fromfile(os.path.join(d, f"{kind}_T{T}_w.bin"), dtype=np.float32).reshape(T, K)
        return torch.from_numpy(idx).long().to(dev), torch.from_numpy(w).to(dev)
    print(f"no routing file for {kind} T{T}: random logits instead", file=sys.stderr)
    p = torch.softmax(torch.randn(T, E, device=dev), -1)
    w, idx = torch.topk(p, K, -1)
    return idx, w / w.sum(-1, keepdim=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--routing-dir", default="")
    ap.add_argument("--tokens", default="4096,16384")
    ap.add_argument("--json", default="")
    ap.add_argument("--skip-hf", action="store_true")
    args = ap.parse_args()
    record("torch", torch.__version__)
    record("device", torch.cuda.get_device_name())
    n = 8192
    a = torch.randn(n, n, device=dev, dtype=bf); b = torch.randn(n, n, device=dev, dtype=bf)
    record("torch_dense_bf16_8192_tflops", 2 * n**3 / timeit(lambda: a @ b, iters=20) / 1e9)
    del a, b
    M = None
    if not args.skip_hf:
        import transformers
        from transformers.models.gemma4 import configuration_gemma4 as C, modeling_gemma4 as M
        record("transformers", transformers.__version__)
    for T in [int(t) for t in args.tokens.split(",")]:
        torch.manual_seed(0)
        x = torch.randn(T, H, device=dev, dtype=bf, requires_grad=True)
        Wgu = (torch.randn(E, H, 2 * I, device=dev, dtype=bf) / math.sqrt(H)).requires_grad_(True)
        Wd = (torch.randn(E, I, H, device=dev, dtype=bf) / math.sqrt(I)).requires_grad_(True)
        go = torch.randn(T, H, device=dev, dtype=bf)
        fl = 2 * T * K * 3 * I * H
        for kind in ("gate", "balanced"):
            idx, w0 = load_routing(args.routing_dir, kind, T)
            w = w0.detach().clone().requires_grad_(True)
            key = f"{kind}_T{T}"

            def f_n():
                return nemo_torch_mm(x, w, idx, Wgu, Wd)

            def fb_n():
                f_n().backward(go)
            ms = timeit(f_n); record(f"nemo_torch_mm_fwd_ms_{key}", ms); record(f"nemo_torch_mm_fwd_tflops_{key}", fl / ms / 1e9)
            ms = timeit(fb_n); record(f"nemo_torch_mm_fwdbwd_ms_{key}", ms); record(f"nemo_torch_mm_fwdbwd_tflops_{key}", 3 * fl / ms / 1e9)
            if M is None:
                continue
            for impl in ("grouped_mm", "eager"):
                if impl == "eager" and (T > 4096 or kind != "gate"):
                    continue
                cfg = C.Gemma4TextConfig(vocab_size=262144, hidden_size=H, intermediate_size=2112, num_hidden_layers=1,
                                         num_attention_heads=16, num_key_value_heads=8, head_dim=256,
                                         global_head_dim=512, num_global_key_value_heads=2, attention_k_eq_v=True,
                                         enable_moe_block=True, num_experts=E, top_k_experts=K,
                                         moe_intermediate_size=I, hidden_size_per_layer_input=0)
                cfg._experts_implementation = impl
                ex = M.Gemma4TextExperts(cfg).to(dev, bf)
                with torch.no_grad():
                    ex.gate_up_proj.copy_(Wgu.transpose(1, 2)); ex.down_proj.copy_(Wd.transpose(1, 2))

                def f_h():
                    return ex(x, idx, w)

                def fb_h():
                    f_h().backward(go)
                it = 3 if impl == "eager" else 10
                ms = timeit(f_h, iters=it); record(f"hf_{impl}_fwd_ms_{key}", ms); record(f"hf_{impl}_fwd_tflops_{key}", fl / ms / 1e9)
                ms = timeit(fb_h, warm=1 if impl == "eager" else 3, iters=it)
                record(f"hf_{impl}_fwdbwd_ms_{key}", ms); record(f"hf_{impl}_fwdbwd_tflops_{key}", 3 * fl / ms / 1e9)
                del ex
            torch.cuda.empty_cache()
        del x, Wgu, Wd, go
        torch.cuda.empty_cache()
    out = args.json or (os.path.join(os.environ["OUT"], "peers.json") if os.environ.get("OUT") else "")
    if out:
        json.dump(res, open(out, "w"), indent=1)


if __name__ == "__main__":
    main()
