#!/usr/bin/env python3
"""compare_safetensors.py A B RTOL: every tensor of B exists in A with the same shape and dtype F32, and
max|a - b| <= RTOL * max|b| per tensor (NaN or Inf anywhere fails). Prints the worst tensor; exit 1 on failure."""
import math, sys

from safetensors_file import read_tensors


def read(path):
    return read_tensors(path, dtypes=("F32",))


a, b, rtol = read(sys.argv[1]), read(sys.argv[2]), float(sys.argv[3])
ok, worst = set(a) == set(b), (0.0, "")
if not ok:
    print("tensor names differ:", sorted(set(a) ^ set(b)))
for name in sorted(set(a) & set(b)):
    (sa, va), (sb, vb) = a[name], b[name]
    if sa != sb:
        print(f"{name}: shape {sa} vs {sb}")
        ok = False
        continue
    scale = max((abs(x) for x in vb), default=0.0)
    diff = max((abs(x - y) for x, y in zip(va, vb)), default=0.0)
    finite = all(math.isfinite(x) for x in va) and all(math.isfinite(x) for x in vb)
    rel = diff / scale if scale > 0 else diff
    if not finite or not (diff <= rtol * scale):
        print(f"{name}: max |diff| {diff:.3g}, max |ref| {scale:.3g}, finite {finite}")
        ok = False
    if rel > worst[0]:
        worst = (rel, name)
print(f"{len(b)} tensors, worst relative difference {worst[0]:.3g} ({worst[1]})")
sys.exit(0 if ok else 1)
