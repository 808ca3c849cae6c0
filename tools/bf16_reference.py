"""transformers' own bfloat16 run of a fixture: the yardstick for g4moe's bf16 GPU model.

For each fixture directory (tests/fixtures/<case>), loads the checkpoint with transformers 5.17.0 in
bfloat16 (attn_implementation="eager", experts_implementation="eager", transformers' own numerics, no
patches), runs input.json forward and backward, and writes <out>/<case>.safetensors with
  logits            [B, S, V] float32 (the model's bf16 logits, widened)
  grad.<ckpt name>  float32, for every trainable text-model parameter (names and layout as the checkpoint and
                    as tests/fixtures' expected.safetensors; the tied head folded into the embedding's)
and prints one JSON line per case with the loss. The loss is the mean cross-entropy over the shifted labels
computed from the bf16 logits upcast to float32, as transformers' ForCausalLMLoss does; its backward flows
into the bf16 model. On a GPU when one is present (the device HF users train on), else on the CPU.

Usage: python3 tools/bf16_reference.py --out DIR tests/fixtures/moe_26b [more fixture dirs]
"""

import argparse
import json
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import Gemma4ForCausalLM, Gemma4ForConditionalGeneration


def load(case_dir, device):
    arch = json.load(open(os.path.join(case_dir, "config.json")))["architectures"][0]
    cls = Gemma4ForCausalLM if arch == "Gemma4ForCausalLM" else Gemma4ForConditionalGeneration
    model = cls.from_pretrained(
        case_dir, dtype=torch.bfloat16, attn_implementation="eager", experts_implementation="eager"
    ).to(device)
    model.eval()  # no dropout; gradients still flow
    return model


def trainable(model):
    """(checkpoint name, parameter) of every text-model parameter, as make_fixtures.py names them."""
    if isinstance(model, Gemma4ForCausalLM):
        return list(model.named_parameters())
    tm = model.model.language_model
    return [("model.language_model." + n, p) for n, p in tm.named_parameters()]


def run(case_dir, out_dir, device):
    model = load(case_dir, device)
    inp = json.load(open(os.path.join(case_dir, "input.json")))
    kw = {"input_ids": torch.tensor(inp["input_ids"], device=device), "use_cache": False}
    for k in ("attention_mask", "position_ids"):
        if k in inp:
            kw[k] = torch.tensor(inp[k], device=device)
    labels = torch.tensor(inp.get("labels", inp["input_ids"]), device=device)
    train = trainable(model)
    for p in model.parameters():
        p.requires_grad_(False)
    for _, p in train:
        p.requires_grad_(True)
    logits = model(**kw).logits
    V = logits.shape[-1]
    shift = F.pad(labels, (0, 1), value=-100)[..., 1:]
    loss = F.cross_entropy(logits.float().reshape(-1, V), shift.reshape(-1), ignore_index=-100)
    loss.backward()
    out = {"logits": logits.detach().float().cpu().contiguous()}
    for name, p in train:
        out["grad." + name] = p.grad.detach().float().cpu().contiguous()
    case = os.path.basename(os.path.normpath(case_dir))
    save_file(out, os.path.join(out_dir, case + ".safetensors"))
    print(json.dumps({"case": case, "loss": loss.item(), "device": str(device)}), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("fixtures", nargs="+")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    for case_dir in args.fixtures:
        run(case_dir, args.out, device)


if __name__ == "__main__":
    main()
