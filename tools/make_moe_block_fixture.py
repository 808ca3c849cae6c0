#!/usr/bin/env python3
"""Generate the MoE-block fixture: transformers 5.17.0's Gemma4TextRouter + Gemma4TextExperts, alone, at shapes
the CUDA kernels accept (hidden and intermediate sizes multiples of 8), in float64 and in bfloat16.

Usage:
    python tools/make_moe_block_fixture.py --out tests/fixtures/moe_block

Why a block-level fixture: the model fixtures (tools/make_fixtures.py) have tiny widths (H 32, I 12) that the
CUDA grouped GEMMs do not take, and they record no block inputs. This one records the block's two inputs and an
upstream gradient, and what transformers computes from them, so that the CPU path (fp32, tight) and the CUDA path
(bf16, loose) are both checked against transformers directly.

Writes <out>/:
    config.json         Gemma4TextConfig of the block (H 256, moe_intermediate_size 64, 16 experts, top-4)
    model.safetensors   the block's parameters in bfloat16, in transformers' names:
                        router.proj.weight [E,H], router.scale [H], router.per_expert_scale [E],
                        experts.gate_up_proj [E,2I,H], experts.down_proj [E,H,I]
    expected.safetensors
        router_input, expert_input, dy    [T,H] BF16 (exact in every precision)
        f64.weights [T,K] (per_expert_scale applied, as HF returns them), f64.indices [T,K] I64
        (every f64.* is computed in float64 and stored rounded once to F32, 6e-8 relative: far below the 1e-5
        the fp32 CPU path is held to, and it halves the file)
        f64.y [T,H]                       experts output
        f64.grad.router_input, f64.grad.expert_input, f64.grad.<param>   d(sum(y * dy)) / d(.)
        bf16.y, bf16.grad.router_input, bf16.grad.expert_input, bf16.grad.<param>
                                          the same computed by the bf16 module (eager experts), BF16
    meta.json           seed, sizes, routing margins, the bf16 module's distance from the f64 reference

Numerics: the float64 pass uses make_fixtures.set_fp64_internals (true fp64 RMSNorm and router softmax); the bf16
pass runs transformers verbatim. Routing: a token is redrawn until, in the float64 router, the relative gap
(p_k - p_{k+1}) / p_k between its K-th and (K+1)-th probability exceeds 5e-2 and the bf16 module picks the
same experts, so that a bf16 router (g4moe's CUDA gate) cannot flip the choice; tokens that pick expert 5 are
redrawn too, so that it gets no token (an empty expert segment), which the fixture's meta records.
"""

import argparse
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import Gemma4TextConfig
from transformers.models.gemma4 import modeling_gemma4 as mg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures  # noqa: E402  (the true-fp64 patches)

SEED = 4242
TOKENS = 192
MARGIN = 5e-2
EMPTY_EXPERT = 5


def block_config():
    return Gemma4TextConfig(
        hidden_size=256,
        moe_intermediate_size=64,
        intermediate_size=256,
        num_experts=16,
        top_k_experts=4,
        enable_moe_block=True,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=128,
        vocab_size=128,
        hidden_activation="gelu_pytorch_tanh",
        rms_norm_eps=1e-6,
    )


class Block(torch.nn.Module):
    """Router and experts as Gemma4TextDecoderLayer wires them: the router reads the raw residual, the experts
    the pre_feedforward_layernorm_2 output (given here directly as expert_input)."""

    def __init__(self, config):
        super().__init__()
        self.router = mg.Gemma4TextRouter(config)
        self.experts = mg.Gemma4TextExperts(config)

    def forward(self, router_input, expert_input):
        _, weights, indices = self.router(router_input)
        return self.experts(expert_input, indices, weights), weights, indices


def bf16_exact(t):
    return t.to(torch.bfloat16).to(torch.float64)


def init_params(block, gen):
    H = block.router.hidden_size
    E = block.router.proj.weight.shape[0]
    I2 = block.experts.gate_up_proj.shape[1]
    with torch.no_grad():
        block.router.proj.weight.copy_(torch.randn(E, H, generator=gen, dtype=torch.float64) * 1.5)
        block.router.scale.copy_(1 + 0.2 * torch.randn(H, generator=gen, dtype=torch.float64))
        block.router.per_expert_scale.copy_((1 + 0.3 * torch.randn(E, generator=gen, dtype=torch.float64)).abs())
        block.experts.gate_up_proj.copy_(torch.randn(E, I2, H, generator=gen, dtype=torch.float64) * H**-0.5)
        block.experts.down_proj.copy_(torch.randn(E, H, I2 // 2, generator=gen, dtype=torch.float64) * (I2 // 2) ** -0.5)
        for p in block.parameters():
            p.copy_(bf16_exact(p))


def margins(probs, k):
    top = torch.topk(probs, k + 1, dim=-1).values
    return (top[:, k - 1] - top[:, k]) / top[:, k - 1]


def run(block, router_input, expert_input, dy):
    block.zero_grad(set_to_none=True)
    r = router_input.clone().requires_grad_(True)
    x = expert_input.clone().requires_grad_(True)
    y, w, idx = block(r, x)
    (y * dy).sum().backward()
    grads = {"router_input": r.grad, "expert_input": x.grad}
    grads.update({n: p.grad for n, p in block.named_parameters()})
    return y.detach(), w.detach(), idx, grads


def router_probs(block, inp):
    with torch.no_grad():
        h = block.router.norm(inp)
        h = h * block.router.scale * block.router.scalar_root_size
        return torch.softmax(block.router.proj(h), dim=-1)


def rel(a, b):
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/fixtures/moe_block")
    args = ap.parse_args()
    if transformers.__version__ != "5.17.0":
        print(f"WARNING: pinned to transformers 5.17.0, running {transformers.__version__}", flush=True)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    cfg = block_config()
    cfg._experts_implementation = "eager"
    gen = torch.Generator().manual_seed(SEED)
    b64 = Block(cfg).to(torch.float64)
    init_params(b64, gen)
    b16 = Block(cfg)
    b16.load_state_dict({k: v.to(torch.bfloat16) for k, v in b64.state_dict().items()})
    b16 = b16.to(torch.bfloat16)

    H, K = cfg.hidden_size, cfg.top_k_experts
    # Inputs: the residual at O(1), the normed expert input at unit RMS, dy at O(1); all bf16-exact. Tokens whose
    # routing is near a tie (or differs in the bf16 router) are redrawn.
    router_input = bf16_exact(torch.randn(TOKENS, H, generator=gen, dtype=torch.float64) * 2.0)
    redrawn = 0
    for _ in range(200):
        set_fp64_internals = make_fixtures.set_fp64_internals
        set_fp64_internals(True)
        p64 = router_probs(b64, router_input)
        set_fp64_internals(False)
        p16 = router_probs(b16, router_input.to(torch.bfloat16)).double()
        bad = margins(p64, K) <= MARGIN
        i64 = torch.topk(p64, K, dim=-1).indices.sort(dim=-1).values
        i16 = torch.topk(p16, K, dim=-1).indices.sort(dim=-1).values
        bad |= (i64 != i16).any(dim=-1)
        bad |= (i64 == EMPTY_EXPERT).any(dim=-1)
        if not bad.any():
            break
        n = int(bad.sum())
        redrawn += n
        router_input[bad] = bf16_exact(torch.randn(n, H, generator=gen, dtype=torch.float64) * 2.0)
    else:
        sys.exit("could not find tokens with clear routing margins")
    expert_input = bf16_exact(torch.randn(TOKENS, H, generator=gen, dtype=torch.float64))
    dy = bf16_exact(torch.randn(TOKENS, H, generator=gen, dtype=torch.float64))

    make_fixtures.set_fp64_internals(True)
    y64, w64, idx64, g64 = run(b64, router_input, expert_input, dy)
    make_fixtures.set_fp64_internals(False)
    y16, w16, idx16, g16 = run(b16, router_input.to(torch.bfloat16), expert_input.to(torch.bfloat16),
                               dy.to(torch.bfloat16))
    assert torch.equal(idx64.sort(-1).values, idx16.sort(-1).values), "bf16 routing differs"
    counts = torch.bincount(idx64.flatten(), minlength=cfg.num_experts)
    assert counts[EMPTY_EXPERT] == 0, "the empty expert got tokens"

    os.makedirs(args.out, exist_ok=True)
    params = {n: p.detach().to(torch.bfloat16).contiguous() for n, p in b64.named_parameters()}
    save_file(params, os.path.join(args.out, "model.safetensors"))
    expected = {
        "router_input": router_input.to(torch.bfloat16),
        "expert_input": expert_input.to(torch.bfloat16),
        "dy": dy.to(torch.bfloat16),
        "f64.weights": w64.float(),
        "f64.indices": idx64.long(),
        "f64.y": y64.float(),
        "bf16.y": y16,
    }
    for n, g in g64.items():
        expected[f"f64.grad.{n}"] = g.detach().float()
    for n, g in g16.items():
        expected[f"bf16.grad.{n}"] = g.detach()
    save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(args.out, "expected.safetensors"))
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg.to_dict(), f, indent=2, sort_keys=True, default=str)
    set_fp64 = make_fixtures.set_fp64_internals
    set_fp64(True)
    m = margins(router_probs(b64, router_input), K)
    set_fp64(False)
    meta = {
        "generator": "tools/make_moe_block_fixture.py",
        "seed": SEED,
        "tokens": TOKENS,
        "hidden_size": H,
        "moe_intermediate_size": cfg.moe_intermediate_size,
        "num_experts": cfg.num_experts,
        "top_k": K,
        "empty_expert": EMPTY_EXPERT,
        "tokens_per_expert": counts.tolist(),
        "routing_margin_threshold": MARGIN,
        "min_routing_margin": float(m.min()),
        "tokens_redrawn": redrawn,
        "loss": "sum(y * dy): grads are the vector-Jacobian products with dy",
        "bf16_module_rel_error_vs_f64": {"y": rel(y16, y64), **{f"grad.{n}": rel(g16[n], g64[n]) for n in g64}},
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__,
                     "python": sys.version.split()[0]},
    }
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    print(json.dumps(meta["bf16_module_rel_error_vs_f64"], indent=1))
    print(f"tokens per expert {counts.tolist()}, redrawn {redrawn}, min margin {float(m.min()):.3g}")


if __name__ == "__main__":
    main()
