#!/usr/bin/env bash
# score_device_test.sh: the whole model on the GPU through the op interface. For every fixture without MoE
# blocks, `g4moe score --grads --device cuda` (fp32) against transformers' float64 reference with the bounds
# the CPU fixture tests hold (relative Frobenius: logits 1e-5, every gradient 1e-4, loss 1e-5); the CPU run's
# error is printed beside it. (CPU against CUDA directly is no measure: both are fp32 approximations, and a
# gradient with cancellation, such as a k_norm weight's, is 1.7e-5 from float64 on one CPU, 3.2e-5 on another.)
# A MoE fixture on cuda must fail with a one-line error naming the op. Skips (exit 0, saying so) without a GPU.
# Usage (GPU machine): tests/cuda/score_device_test.sh G4MOE_BINARY
set -u
g4moe=${1:-build/g4moe}
cd "$(dirname "$0")/../.."
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "score_device_test: SKIPPED (no GPU on this machine)"
  exit 0
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failures=0
for f in dense_e2b dense_31b; do
  d=tests/fixtures/$f
  "$g4moe" score --model "$d" --input "$d/input.json" --grads --output "$scratch/$f.cpu.safetensors" \
    >"$scratch/$f.cpu.json" || { echo "FAIL $f: cpu score"; failures=$((failures + 1)); continue; }
  "$g4moe" score --model "$d" --input "$d/input.json" --grads --output "$scratch/$f.cuda.safetensors" \
    --device cuda >"$scratch/$f.cuda.json" || { echo "FAIL $f: cuda score"; failures=$((failures + 1)); continue; }
  python3 - "$scratch/$f" "$f" "$d/expected.safetensors" <<'PY' || failures=$((failures + 1))
import array, json, math, struct, sys
base, name, expected_path = sys.argv[1], sys.argv[2], sys.argv[3]
def load(path):
    with open(path, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(n))
        data = fh.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__": continue
        a, b = v["data_offsets"]
        arr = array.array("d" if v["dtype"] == "F64" else "f"); arr.frombytes(data[a:b]); out[k] = arr
    return out
def error(x, ref):  # relative Frobenius, as the CPU fixture tests measure it; NaN/Inf fail
    if any(not math.isfinite(v) for v in x): return math.inf
    diff = math.sqrt(sum((p - q) ** 2 for p, q in zip(x, ref)))
    norm = math.sqrt(sum(q * q for q in ref))
    return diff / norm if norm > 0 else diff
ref = load(expected_path)
cpu, gpu = load(base + ".cpu.safetensors"), load(base + ".cuda.safetensors")
assert cpu.keys() == gpu.keys(), "different tensors"
ok, worst, worst_cpu, worst_name = True, 0.0, 0.0, ""
for k in gpu:
    bound = 1e-5 if k == "logits" else 1e-4  # the CPU fixture tests' bounds (forward 1e-5, gradients 1e-4)
    e_gpu, e_cpu = error(gpu[k], ref[k]), error(cpu[k], ref[k])
    if not e_gpu <= bound:
        ok = False
        print(f"FAIL {name}: {k} is {e_gpu:.2e} from float64 on cuda (bound {bound:g}; cpu {e_cpu:.2e})")
    if e_gpu > worst: worst, worst_cpu, worst_name = e_gpu, e_cpu, k
want = ref["loss"][0]
lg = json.load(open(base + ".cuda.json"))["loss"]
loss_err = abs(lg - want) / abs(want)
ok = ok and loss_err <= 1e-5
print(f"{'ok  ' if ok else 'FAIL'} {name}: {len(gpu)} tensors against float64, worst {worst:.2e} on cuda "
      f"({worst_name}; {worst_cpu:.2e} on cpu); loss {loss_err:.1e} from float64")
sys.exit(0 if ok else 1)
PY
done
d=tests/fixtures/moe_26b
if "$g4moe" score --model "$d" --input "$d/input.json" --device cuda >/dev/null 2>"$scratch/moe.err"; then
  echo "FAIL moe_26b: scored on cuda although the MoE block has no CUDA version"; failures=$((failures + 1))
elif grep -q "op moe_block has no cuda version yet" "$scratch/moe.err" && [ "$(wc -l <"$scratch/moe.err")" -eq 1 ]; then
  echo "ok   moe_26b on cuda: $(cat "$scratch/moe.err")"
else
  echo "FAIL moe_26b: unexpected error: $(head -c 300 "$scratch/moe.err")"; failures=$((failures + 1))
fi
echo "score_device_test: $failures failure(s)"
exit $((failures > 0))
