#!/usr/bin/env python3
"""Independent re-implementation of the Gemma 4 text model (plain torch, float64, no transformers) that
recomputes every fixture written by tools/make_fixtures.py and compares it against expected.safetensors:
logits, loss, hidden states, gradients (autograd) and the AdamW steps (hand-written update rule).

It is a readable executable spec of what the C++ engine must do. Usage:
    python tools/check_fixtures.py [--fixtures tests/fixtures] [--cases a,b]
Needs only torch and safetensors.
"""

import argparse
import json
import math
import os

import torch
import torch.nn.functional as F
from safetensors import safe_open

SL, FU = "sliding_attention", "full_attention"


def load_case(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    tc = cfg.get("text_config", cfg)
    prefix = "model.language_model." if "text_config" in cfg else "model."
    idx = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) else ["model.safetensors"]
    w = {}
    for fn in files:
        with safe_open(os.path.join(d, fn), "pt") as f:
            for k in f.keys():
                if k.startswith(prefix):
                    w[k[len(prefix):]] = f.get_tensor(k).to(torch.float64)
    inp = json.load(open(os.path.join(d, "input.json")))
    with safe_open(os.path.join(d, "expected.safetensors"), "pt") as f:
        exp = {k: f.get_tensor(k) for k in f.keys()}
    return tc, prefix, w, inp, exp


def layer_dims(tc, i):
    """(head_dim, num_kv_heads) of layer i; accepts both config forms (5.17 per_layer_config / released)."""
    hd, kv = tc["head_dim"], tc["num_key_value_heads"]
    if tc["layer_types"][i] == FU:
        if "per_layer_config" in tc:
            o = tc["per_layer_config"].get(str(i), {})
            hd, kv = o.get("head_dim", hd), o.get("num_key_value_heads", kv)
        else:
            hd = tc.get("global_head_dim", 512)
            if tc.get("attention_k_eq_v") and tc.get("num_global_key_value_heads") is not None:
                kv = tc["num_global_key_value_heads"]
    return hd, kv


def inv_freq(tc, lt, hd):
    rp = tc["rope_parameters"][lt]
    base = rp["rope_theta"]
    if rp["rope_type"] == "default":
        f = 1.0 / (base ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    elif rp["rope_type"] == "proportional":
        ra = int(rp.get("partial_rotary_factor", 1.0) * hd // 2)
        f = 1.0 / (base ** (torch.arange(0, 2 * ra, 2, dtype=torch.float32) / hd))
        f = torch.cat([f, torch.zeros(hd // 2 - ra, dtype=torch.float32)])
        f = f / rp.get("factor", 1.0)
    else:
        raise NotImplementedError(rp)
    return f.double()  # fp32 table, widened; angles are computed in fp64


def rms(x, w=None, eps=1e-6):
    y = x * torch.pow(x.pow(2).mean(-1, keepdim=True) + eps, -0.5)
    return y * w if w is not None else y


def rope(x, cos, sin):  # x [B,S,N,D]; cos/sin [B,S,D]
    d = x.shape[-1] // 2
    rot = torch.cat([-x[..., d:], x[..., :d]], dim=-1)
    return x * cos[:, :, None] + rot * sin[:, :, None]


def gelu(x):
    return F.gelu(x, approximate="tanh")


def forward(tc, w, ids, am, pos):
    B, S = ids.shape
    H, L, V = tc["hidden_size"], tc["num_hidden_layers"], tc["vocab_size"]
    eps = tc["rms_norm_eps"]
    nq = tc["num_attention_heads"]
    W = tc["sliding_window"]
    P = tc.get("hidden_size_per_layer_input") or 0
    hid = {}

    x = w["embed_tokens.weight"][ids] * math.sqrt(H)
    hid["hidden.embed"] = x
    if P:
        t = (w["embed_tokens_per_layer.weight"][ids] * math.sqrt(P)).reshape(B, S, L, P)
        c = (x @ w["per_layer_model_projection.weight"].T) * H**-0.5
        c = rms(c.reshape(B, S, L, P), w["per_layer_projection_norm.weight"], eps)
        ple = (c + t) * 2**-0.5

    # masks [B, S(q), S(k)]
    q_i = torch.arange(S)[:, None]
    k_i = torch.arange(S)[None, :]
    causal = (k_i <= q_i)[None].expand(B, S, S)
    if am is not None:
        causal = causal & am[:, None, :].bool()
    elif pos is not None:
        seg = torch.cumsum(torch.cat([torch.zeros(B, 1, dtype=torch.long), (pos[:, 1:] - pos[:, :-1] != 1).long()], 1), 1)
        causal = causal & (seg[:, :, None] == seg[:, None, :])
    masks = {FU: causal, SL: causal & ((q_i - k_i) < W)[None]}
    if pos is None:
        pos = torch.arange(S)[None].expand(B, S)

    rot = {}
    first_shared = L - tc.get("num_kv_shared_layers", 0)
    shared_kv = {}
    for i in range(L):
        lt = tc["layer_types"][i]
        hd, nkv = layer_dims(tc, i)
        if lt not in rot:
            f = inv_freq(tc, lt, hd)
            ang = pos[..., None].double() * f
            emb = torch.cat([ang, ang], -1)
            rot[lt] = (emb.cos(), emb.sin(), f)
        cos, sin, _ = rot[lt]
        p = f"layers.{i}."
        a = rms(x, w[p + "input_layernorm.weight"], eps)
        q = (a @ w[p + "self_attn.q_proj.weight"].T).view(B, S, nq, hd)
        q = rope(rms(q, w[p + "self_attn.q_norm.weight"], eps), cos, sin)
        if i >= first_shared:
            k, v = shared_kv[lt]
        else:
            kr = (a @ w[p + "self_attn.k_proj.weight"].T).view(B, S, nkv, hd)
            if p + "self_attn.v_proj.weight" in w:
                vr = (a @ w[p + "self_attn.v_proj.weight"].T).view(B, S, nkv, hd)
            else:  # k_eq_v on a full layer: V = raw K projection
                assert lt == FU and tc["attention_k_eq_v"]
                vr = kr
            k = rope(rms(kr, w[p + "self_attn.k_norm.weight"], eps), cos, sin)
            v = rms(vr, None, eps)
            # last non-shared layer of its type provides K/V for the shared layers
            if i < first_shared and i == max(j for j in range(first_shared) if tc["layer_types"][j] == lt):
                shared_kv[lt] = (k, v)
        nkv_eff = k.shape[2]
        g = nq // nkv_eff
        kk = k.repeat_interleave(g, dim=2)
        vv = v.repeat_interleave(g, dim=2)
        sc = torch.einsum("bqhd,bkhd->bhqk", q, kk)  # scaling 1.0
        m = masks[lt][:, None]
        sc = sc.masked_fill(~m, float("-inf"))
        pr = torch.softmax(sc, -1)
        pr = torch.nan_to_num(pr, nan=0.0)  # fully masked rows (pads only) -> 0 (HF would differ; ignored)
        o = torch.einsum("bhqk,bkhd->bqhd", pr, vv).reshape(B, S, nq * hd)
        o = o @ w[p + "self_attn.o_proj.weight"].T
        x = x + rms(o, w[p + "post_attention_layernorm.weight"], eps)

        r = x
        y = rms(r, w[p + "pre_feedforward_layernorm.weight"], eps)
        mlp = (gelu(y @ w[p + "mlp.gate_proj.weight"].T) * (y @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
        if tc.get("enable_moe_block"):
            m1 = rms(mlp, w[p + "post_feedforward_layernorm_1.weight"], eps)
            z = rms(r, None, eps) * w[p + "router.scale"] * H**-0.5
            probs = torch.softmax(z @ w[p + "router.proj.weight"].T, -1)
            topv, topi = torch.topk(probs, tc["top_k_experts"], dim=-1)
            wts = topv / topv.sum(-1, keepdim=True) * w[p + "router.per_expert_scale"][topi]
            xe = rms(r, w[p + "pre_feedforward_layernorm_2.weight"], eps)
            I = tc["moe_intermediate_size"]
            out = torch.zeros_like(xe)
            for j in range(tc["top_k_experts"]):
                gu = torch.einsum("bsh,bsoh->bso", xe, w[p + "experts.gate_up_proj"][topi[..., j]])
                hh = gelu(gu[..., :I]) * gu[..., I:]
                yy = torch.einsum("bsi,bshi->bsh", hh, w[p + "experts.down_proj"][topi[..., j]])
                out = out + wts[..., j : j + 1] * yy
            mlp = m1 + rms(out, w[p + "post_feedforward_layernorm_2.weight"], eps)
        x = r + rms(mlp, w[p + "post_feedforward_layernorm.weight"], eps)
        if P:
            gte = gelu(x @ w[p + "per_layer_input_gate.weight"].T) * ple[:, :, i]
            x = x + rms(gte @ w[p + "per_layer_projection.weight"].T, w[p + "post_per_layer_input_norm.weight"], eps)
        x = x * w[p + "layer_scalar"]
        hid[f"hidden.layer.{i}"] = x
    h = rms(x, w["norm.weight"], eps)
    pre = h @ w["embed_tokens.weight"].T
    cap = tc.get("final_logit_softcapping")
    logits = torch.tanh(pre / cap) * cap if cap else pre
    for lt, (_, _, f) in rot.items():
        hid[f"rope.{lt}.inv_freq"] = f
    hid["logits.pre_softcap"] = pre
    return logits, hid


def loss_fn(logits, labels):
    shift = F.pad(labels, (0, 1), value=-100)[..., 1:]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), shift.reshape(-1), ignore_index=-100)


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


def check_case(d, tol=1e-9):
    tc, prefix, w, inp, exp = load_case(d)
    ids = torch.tensor(inp["input_ids"])
    am = torch.tensor(inp["attention_mask"]) if "attention_mask" in inp else None
    pos = torch.tensor(inp["position_ids"]) if "position_ids" in inp else None
    labels = torch.tensor(inp["labels"])
    valid = am.bool() if am is not None else torch.ones_like(ids, dtype=torch.bool)

    trainable = sorted(k[len("grad."):] for k in exp if k.startswith("grad."))
    params = {}
    for n in trainable:
        assert n.startswith(prefix), n
        params[n] = w[n[len(prefix):]].clone().requires_grad_(True)

    def wdict():
        d2 = dict(w)
        for n, t in params.items():
            d2[n[len(prefix):]] = t
        return d2

    worst = {}
    logits, hid = forward(tc, wdict(), ids, am, pos)
    loss = loss_fn(logits, labels)
    worst["logits"] = rel_err(logits.detach()[valid], exp["logits"][valid])
    worst["loss"] = rel_err(loss.detach().reshape(1), exp["loss"])
    worst["hidden"] = max(rel_err(v.detach()[valid], exp[k][valid]) for k, v in hid.items() if k.startswith("hidden"))
    worst["logits.pre_softcap"] = rel_err(hid["logits.pre_softcap"].detach()[valid], exp["logits.pre_softcap"][valid])
    for k, v in hid.items():
        if k.startswith("rope."):
            assert torch.equal(v, exp[k]), k
    # grads + hand-written AdamW (torch.optim.AdamW semantics, decoupled weight decay)
    lr, b1, b2, eps_, wd = 1e-2, 0.9, 0.999, 1e-8, 0.1
    state = {n: (torch.zeros_like(p), torch.zeros_like(p)) for n, p in params.items()}
    gerr, a1err, a3err = 0.0, 0.0, 0.0
    for step in range(1, 4):
        if step > 1:
            logits, _ = forward(tc, wdict(), ids, am, pos)
            loss = loss_fn(logits, labels)
        grads = torch.autograd.grad(loss, list(params.values()))
        with torch.no_grad():
            for (n, p), g in zip(params.items(), grads):
                if step == 1:
                    gerr = max(gerr, rel_err(g, exp["grad." + n]))
                m, v = state[n]
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                p.mul_(1 - lr * wd)
                denom = v.sqrt() / math.sqrt(1 - b2**step) + eps_
                p.addcdiv_(m, denom, value=-lr / (1 - b1**step))
                if step == 1:
                    a1err = max(a1err, rel_err(p, exp["adamw1." + n]))
                if step == 3:
                    a3err = max(a3err, rel_err(p, exp["adamw3." + n]))
    worst.update(grad=gerr, adamw1=a1err, adamw3=a3err)
    ok = all(v < tol for v in worst.values())
    return ok, worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default="tests/fixtures")
    ap.add_argument("--cases", default=None)
    ap.add_argument("--tol", type=float, default=1e-9, help="max relative error (max|diff| / max|ref|) per tensor")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cases = args.cases.split(",") if args.cases else sorted(
        c for c in os.listdir(args.fixtures) if os.path.isfile(os.path.join(args.fixtures, c, "expected.safetensors"))
    )
    bad = 0
    for c in cases:
        ok, worst = check_case(os.path.join(args.fixtures, c), args.tol)
        bad += not ok
        print(f"[{c}] {'OK' if ok else 'MISMATCH'} " + " ".join(f"{k}={v:.2e}" for k, v in worst.items()), flush=True)
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
