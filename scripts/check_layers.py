#!/usr/bin/env python3
"""check_layers.py: fails on an #include that points up g4moe's layer order (../shared/ARCHITECTURE.md's table,
restated in docs/design.md, "Layers").

Each folder of src/ may include only itself and the folders listed for it below; model/ and everything under
the op interface never include a CUDA header (only ops/cuda, core/cuda and the NCCL parts do). Tests mirror the
layers: tests/<layer>/ obeys its layer's row too. The op interface's backends (ops/cpu, ops/cuda) sit under
ops/ops.h: only ops/ itself, moe/ (its CPU MoE kernels and the GPU expert dispatcher) and cli/ include them,
and the two backends never include each other (what they share is in ops/*.h) (test folders named after no layer, such as tests/parity,
tests/cuda or tests/mpi, exercise several layers at once and are not checked). Prints every violation as
`file:line: <layer> may not include <header>` and exits 1 if there is any."""
import os
import re
import sys

# folder -> the folders it may include (besides itself). Arrows only point down this list.
ALLOWED = {
    "core": set(),
    "io": {"core"},
    "ops": {"core"},
    "dist": {"core"},
    "moe": {"core", "ops", "dist"},
    "model": {"core", "ops", "moe"},
    "data": {"core", "io"},
    "train": {"core", "io", "ops", "dist", "moe", "model", "data"},
    "generate": {"model", "data"},
    "serve": {"generate", "data"},
    "cli": {"core", "io", "ops", "dist", "moe", "model", "data", "train", "generate", "serve"},
}
# Folders whose code may name CUDA headers (everything else is backend-agnostic).
CUDA_ALLOWED = ("src/core/cuda/", "src/ops/cuda/", "src/moe/nccl_", "src/dist/nccl_")
CUDA_HEADER = re.compile(r"#include <(cuda|cublas|cuda_runtime|cuda_bf16|nccl)[a-zA-Z_]*\.h>")
LOCAL_INCLUDE = re.compile(r'#include "([a-z_]+)/')
BACKEND_INCLUDE = re.compile(r'#include "ops/(cpu|cuda)/')
BACKEND_USERS = {"ops", "moe", "cli"}


def check_file(path, rel, layer, problems):
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            m = LOCAL_INCLUDE.match(line)
            if m and m.group(1) in ALLOWED and m.group(1) != layer and m.group(1) not in ALLOWED[layer]:
                problems.append(f"{rel}:{number}: {layer} may not include {line.split()[1]}")
            b = BACKEND_INCLUDE.match(line)
            if b and layer not in BACKEND_USERS:
                problems.append(f"{rel}:{number}: {layer} may not include the backend header {line.split()[1]}")
            if b and layer == "ops":
                here = rel.split(os.sep)[2] if len(rel.split(os.sep)) > 3 else ""
                if here in ("cpu", "cuda") and here != b.group(1):
                    problems.append(f"{rel}:{number}: ops/{here} may not include the other backend's {line.split()[1]}")
            if CUDA_HEADER.match(line) and rel.startswith("src/") and not rel.startswith(CUDA_ALLOWED):
                problems.append(f"{rel}:{number}: only CUDA backend code may include {line.split()[1]}")


def main(root):
    problems = []
    src = os.path.join(root, "src")
    if not os.path.isdir(src):
        print(f"check_layers: no src/ under {os.path.abspath(root)}")
        return 1
    for top in ("src", "tests"):
        for folder, _, files in sorted(os.walk(os.path.join(root, top))):
            for name in sorted(files):
                if not name.endswith((".h", ".cpp", ".cu", ".cuh")):
                    continue
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, root)
                parts = rel.split(os.sep)
                if len(parts) < 3:
                    continue  # tests/ root helpers
                layer = parts[1]
                if layer not in ALLOWED:
                    if top == "src":
                        problems.append(f"{rel}:1: folder src/{layer} is not in the layer table")
                    continue
                check_file(path, rel, layer, problems)
    for p in problems:
        print(p)
    print(f"check_layers: {len(problems)} violation(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    # Default: the repository this script belongs to, wherever it is run from.
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")))
