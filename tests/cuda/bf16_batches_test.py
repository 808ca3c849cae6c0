"""g4moe's bf16 model on the GPU against transformers 5.17's own bf16 run, over many batches.

One batch cannot decide whether g4moe's bf16 gradients are as close to float64 as transformers' are: on the
tiny fixtures both are 10-35% off float64, and the ratio of the two errors swings from 0.56 to 2.3 from batch
to batch, every tensor of a batch moving together (docs/perf-notes.md, "The bf16 GPU model, first run"). So
for each fixture this runs the committed batch and BATCHES-1 seeded random ones (2 rows of 11 tokens, two
labels per row masked) through `g4moe score --grads --device cuda --dtype bf16`, transformers in bf16 on the
GPU (eager attention, eager experts) and transformers in float64 on the CPU (make_fixtures.py's true-fp64
internals), and per batch takes the mean over tensors (logits and every gradient) of
log(|ours - f64| / |transformers_bf16 - f64|) (relative Frobenius errors). The fixture passes when the mean
of those per-batch values is at most two standard errors above 0: g4moe no further from float64 than
transformers' bf16, within what the sampling can tell apart. Prints the geometric-mean ratio, its spread,
and the tensor whose ratio averaged over the batches is worst. Exits with the number of failing fixtures.

Usage (GPU machine): python3 tests/cuda/bf16_batches_test.py G4MOE_BINARY [BATCHES]   (default 16)
"""
import json
import math
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import Gemma4ForCausalLM, Gemma4ForConditionalGeneration

sys.path.insert(0, "tools")
import make_fixtures as mf  # noqa: E402  (true-fp64 internals for the float64 reference)
from bf16_reference import trainable  # noqa: E402  (checkpoint names of the text model's parameters)

FIXTURES = ["dense_e2b", "dense_31b", "moe_26b", "moe_packed", "moe_padding", "released_layout", "bf16_checkpoint"]


def transformers_run(case, dtype, batch, device):
    """Logits and the gradient of every text-model parameter (checkpoint names) of the mean causal-LM loss."""
    mf.set_fp64_internals(dtype == torch.float64)
    config = json.load(open(f"tests/fixtures/{case}/config.json"))
    cls = Gemma4ForCausalLM if config["architectures"][0] == "Gemma4ForCausalLM" else Gemma4ForConditionalGeneration
    model = cls.from_pretrained(f"tests/fixtures/{case}", dtype=dtype, attn_implementation="eager",
                                experts_implementation="eager").to(device).eval()
    kwargs = {k: torch.tensor(v, device=device) for k, v in batch.items() if k != "labels"}
    logits = model(**kwargs, use_cache=False).logits
    labels = F.pad(torch.tensor(batch["labels"], device=device), (0, 1), value=-100)[..., 1:]
    wide = logits.double() if dtype == torch.float64 else logits.float()
    F.cross_entropy(wide.reshape(-1, wide.shape[-1]), labels.reshape(-1), ignore_index=-100).backward()
    out = {"logits": logits.detach().double().cpu()}
    out.update({"grad." + n: p.grad.detach().double().cpu() for n, p in trainable(model) if p.grad is not None})
    mf.set_fp64_internals(False)
    return out


def batches(case, count):
    committed = json.load(open(f"tests/fixtures/{case}/input.json"))
    committed.setdefault("labels", committed["input_ids"])
    yield committed
    config = json.load(open(f"tests/fixtures/{case}/config.json"))
    vocab = config.get("text_config", config)["vocab_size"]
    for seed in range(1, count):
        gen = torch.Generator().manual_seed(1000 + seed)
        ids = torch.randint(3, vocab, (2, 11), generator=gen)
        labels = ids.clone()
        for row in range(2):
            labels[row, (torch.randperm(10, generator=gen)[:2] + 1)] = -100
        yield {"input_ids": ids.tolist(), "labels": labels.tolist()}


def relative(x, ref):
    return ((x - ref).norm() / ref.norm()).item()


def main():
    g4moe, count = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 16
    failures = 0
    scratch = tempfile.mkdtemp()
    for case in FIXTURES:
        per_batch, per_tensor = [], {}
        for batch in batches(case, count):
            path = os.path.join(scratch, "input.json")
            json.dump(batch, open(path, "w"))
            out = os.path.join(scratch, "grads.safetensors")
            subprocess.run([g4moe, "score", "--model", f"tests/fixtures/{case}", "--input", path, "--grads", "--output",
                            out, "--overwrite", "--device", "cuda", "--dtype", "bf16"], check=True,
                           stdout=subprocess.DEVNULL)
            ours = {k: v.double() for k, v in load_file(out).items()}
            reference = transformers_run(case, torch.float64, batch, "cpu")
            theirs = transformers_run(case, torch.bfloat16, batch, "cuda")
            logs = []
            for name, ref in reference.items():
                if name not in ours or float(ref.norm()) == 0:
                    continue
                ratio = relative(ours[name], ref) / max(relative(theirs[name], ref), 1e-30)
                assert math.isfinite(ratio), (case, name, ratio)
                logs.append(math.log(ratio))
                per_tensor.setdefault(name, []).append(math.log(ratio))
            per_batch.append(sum(logs) / len(logs))
        mean = sum(per_batch) / len(per_batch)
        spread = math.sqrt(sum((x - mean) ** 2 for x in per_batch) / max(len(per_batch) - 1, 1))
        stderr = spread / math.sqrt(len(per_batch))
        worst = max(per_tensor, key=lambda k: sum(per_tensor[k]) / len(per_tensor[k]))
        worst_ratio = math.exp(sum(per_tensor[worst]) / len(per_tensor[worst]))
        passed = mean <= 2 * stderr
        failures += 0 if passed else 1
        print(f"{'ok  ' if passed else 'FAIL'} {case}: geometric-mean ratio to transformers' bf16 error "
              f"{math.exp(mean):.3f} over {len(per_batch)} batches (per batch {math.exp(min(per_batch)):.2f}-"
              f"{math.exp(max(per_batch)):.2f}, bound {math.exp(2 * stderr):.3f}); worst tensor on average "
              f"{worst} {worst_ratio:.2f}", flush=True)
    sys.exit(failures)


if __name__ == "__main__":
    main()
