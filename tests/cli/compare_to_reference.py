#!/usr/bin/env python3
"""compare_to_reference.py OUT EXPECTED: `g4moe score --grads` output (F32) against a fixture's float64
reference (transformers, tests/fixtures/<case>/expected.safetensors), with the fixture tests' own measures and
bounds: logits relative Frobenius error <= 1e-5 (forward_fixture_test), every gradient <= 1e-4
(backward_fixture_test). NaN fails. Prints the worst of each; exit 1 on failure.

This is the bound for runs whose fp32 reduction order differs from one process (data-parallel splits sum each
weight gradient over other token subsets): any fp32 evaluation order must stay as close to the exact result as
the one-process engine is required to be."""
import math, sys

from safetensors_file import read_tensors


def read(path):
    return {name: values for name, (shape, values) in read_tensors(path).items()}


def rel(a, e):
    diff = sum((x - y) * (x - y) for x, y in zip(a, e))
    norm = sum(y * y for y in e)
    if any(math.isnan(x) for x in a):
        return math.nan
    return math.sqrt(diff / norm) if norm > 0 else math.sqrt(diff)


out, ref = read(sys.argv[1]), read(sys.argv[2])
ok = True
logits = rel(out["logits"], ref["logits"])
ok &= logits <= 1e-5
worst, worst_name, count = 0.0, "", 0
for name in sorted(k for k in out if k.startswith("grad.")):
    if name not in ref:
        print(f"{name}: no reference")
        ok = False
        continue
    err = rel(out[name], ref[name])
    count += 1
    if not (err <= 1e-4):
        print(f"{name}: relative error {err:.3g} > 1e-4")
        ok = False
    if not (err <= worst):
        worst, worst_name = err, name
print(f"logits {logits:.3g} (<= 1e-5), {count} gradients, worst {worst:.3g} ({worst_name}) (<= 1e-4) vs float64")
sys.exit(0 if ok and count > 10 else 1)
