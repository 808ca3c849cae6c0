#!/usr/bin/env bash
# scripts/check_layers.py on small trees: an include that points up the layer order (in src/ or in the tests of
# a layer), a backend header outside ops/, moe/ and cli/, one backend including the other, an unknown folder
# and a CUDA header outside the CUDA backend each fail with the file and line; the
# repository itself passes.
# Usage: check_layers_test.sh   (run from the repository root)
set -u
g4moe=unused
source "$(dirname "$0")/lib.sh"
tree() { rm -rf "$scratch/t" && mkdir -p "$scratch/t/src/$1" && printf '%s\n' "$2" >"$scratch/t/src/$1/x.h"; }
check() {  # check NAME WANT_RC WANT_TEXT
  python3 scripts/check_layers.py "$scratch/t" >"$scratch/out" 2>&1
  local rc=$?
  [ "$rc" -eq "$2" ] && grep -q -- "$3" "$scratch/out" && pass "$1" || bad "$1 (rc=$rc: $(head -c 300 "$scratch/out"))"
}
tree core '#include "model/gemma4_model.h"'
check "core including model is refused" 1 "src/core/x.h:1: core may not include \"model/gemma4_model.h\""
tree data '#include "model/batch.h"'
check "data including model is refused" 1 "data may not include"
tree model '#include "io/checkpoint.h"'
check "model including io is refused (loading lives in train/)" 1 "model may not include \"io/checkpoint.h\""
tree model '#include <cuda_runtime.h>'
check "a CUDA header in model/ is refused" 1 "only CUDA backend code may include <cuda_runtime.h>"
tree misc '#include "core/error.h"'
check "an unknown folder is refused" 1 "is not in the layer table"
tree model '#include "ops/ops.h"'
mkdir -p "$scratch/t/tests/model" && printf '%s\n' '#include "io/checkpoint.h"' >"$scratch/t/tests/model/y_test.cpp"
check "a model test including io is refused (tests mirror the layers)" 1 "tests/model/y_test.cpp:1: model may not include"
mkdir -p "$scratch/t/tests/parity" && printf '%s\n' '#include "io/checkpoint.h"' >"$scratch/t/tests/parity/z.cpp"
rm "$scratch/t/tests/model/y_test.cpp"
check "a test folder named after no layer is not checked" 0 "0 violation"
tree model '#include "ops/cpu/rope.h"'
check "model including a backend header is refused (it calls ops/ops.h)" 1 "model may not include the backend header"
mkdir -p "$scratch/t/src/ops/cuda" && printf '%s\n' '#include "ops/cpu/gelu.h"' >"$scratch/t/src/ops/cuda/k.cu"
rm "$scratch/t/src/model/x.h"
check "one backend including the other is refused" 1 "ops/cuda may not include the other backend's"
tree moe '#include "ops/cpu/moe_gate.h"'
check "moe including the CPU MoE kernels passes" 0 "0 violation"
tree train '#include "model/gemma4_model.h"'
check "train including model passes" 0 "0 violation"
python3 scripts/check_layers.py . >"$scratch/out" 2>&1 && pass "the repository passes" || bad "the repository: $(cat "$scratch/out")"
finish check_layers_test
