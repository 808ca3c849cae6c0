"""Distances of g4moe's GPU outputs from transformers' float64 reference, for tests/cuda/score_device_test.sh.

  compare_to_reference.py f32  NAME EXPECTED OURS.safetensors OURS.json CPU.safetensors
      every tensor (logits, grad.*) within the CPU fixture tests' bounds of float64 (relative Frobenius: logits
      1e-5, gradients 1e-4; loss 1e-5); the CPU's own distance is printed beside it.
  compare_to_reference.py bf16 NAME EXPECTED OURS.safetensors OURS.json HF_BF16.safetensors HF_LOSS RATIO
      every tensor no further from float64 than transformers' own bf16 run is, times RATIO (the bound stated in
      the test), and the loss likewise; prints the worst ratio and every tensor above 1.

Logits are compared at the positions input.json's attention_mask marks valid (padded rows are not meaningful:
see tests/fixtures/README.md). NaN or Inf anywhere fails. Exit status 1 on any failure.
"""

import array
import json
import math
import os
import struct
import sys


def load(path):
    with open(path, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(n))
        data = fh.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        arr = array.array("d" if v["dtype"] == "F64" else "f")
        arr.frombytes(data[a:b])
        out[k] = arr
    return out


def error(x, ref, keep=None):
    """Relative Frobenius distance of x from ref over the kept elements; inf for NaN/Inf."""
    idx = range(len(ref)) if keep is None else keep
    if any(not math.isfinite(x[i]) for i in idx):
        return math.inf
    diff = math.sqrt(sum((x[i] - ref[i]) ** 2 for i in idx))
    norm = math.sqrt(sum(ref[i] ** 2 for i in idx))
    return diff / norm if norm > 0 else diff


def valid_logit_elements(fixture_dir, vocab):
    inp = json.load(open(os.path.join(fixture_dir, "input.json")))
    if "attention_mask" not in inp:
        return None
    flat = [m for row in inp["attention_mask"] for m in row]
    return [p * vocab + v for p, m in enumerate(flat) if m for v in range(vocab)]


def main():
    mode, name, expected_path, ours_path, ours_json = sys.argv[1:6]
    ref, ours = load(expected_path), load(ours_path)
    fixture_dir = os.path.dirname(expected_path)
    vocab = json.load(open(os.path.join(fixture_dir, "config.json"))).get("text_config", {}).get("vocab_size") or \
        json.load(open(os.path.join(fixture_dir, "config.json")))["vocab_size"]
    keep_logits = valid_logit_elements(fixture_dir, vocab)
    keep = lambda k: keep_logits if k == "logits" else None
    want_loss = ref["loss"][0]
    loss = json.load(open(ours_json))["loss"]
    loss_err = abs(loss - want_loss) / abs(want_loss) if loss is not None else math.inf
    ok = True
    if mode == "f32":
        cpu = load(sys.argv[6])
        assert cpu.keys() == ours.keys(), "different tensors"
        worst, worst_cpu, worst_name = 0.0, 0.0, ""
        for k in ours:
            bound = 1e-5 if k == "logits" else 1e-4  # the CPU fixture tests' bounds
            e, e_cpu = error(ours[k], ref[k], keep(k)), error(cpu[k], ref[k], keep(k))
            if not e <= bound:
                ok = False
                print(f"FAIL {name}: {k} is {e:.2e} from float64 on cuda (bound {bound:g}; cpu {e_cpu:.2e})")
            if e > worst:
                worst, worst_cpu, worst_name = e, e_cpu, k
        ok = ok and loss_err <= 1e-5
        print(f"{'ok  ' if ok else 'FAIL'} {name} f32: {len(ours)} tensors against float64, worst {worst:.2e} on "
              f"cuda ({worst_name}; {worst_cpu:.2e} on cpu); loss {loss_err:.1e} from float64")
    else:
        hf, hf_loss, bound = load(sys.argv[6]), float(sys.argv[7]), float(sys.argv[8])
        missing = sorted(set(ours) ^ set(hf))
        if missing:
            print(f"FAIL {name}: tensors not in both runs: {missing[:5]}")
            sys.exit(1)
        ratios = []
        for k in sorted(ours):
            e, e_hf = error(ours[k], ref[k], keep(k)), error(hf[k], ref[k], keep(k))
            r = e / e_hf if e_hf > 0 else (0.0 if e == 0 else math.inf)
            ratios.append((r, k, e, e_hf))
            if not r <= bound:
                ok = False
                print(f"FAIL {name}: {k} is {e:.2e} from float64 in bf16 on cuda, transformers bf16 {e_hf:.2e} "
                      f"(ratio {r:.2f} > {bound:g})")
        hf_loss_err = abs(hf_loss - want_loss) / abs(want_loss)
        loss_ratio = loss_err / hf_loss_err if hf_loss_err > 0 else (0.0 if loss_err == 0 else math.inf)
        ok = ok and loss_ratio <= bound
        ratios.sort(reverse=True)
        above = sum(1 for r in ratios if r[0] > 1.0)
        r, k, e, e_hf = ratios[0]
        med = ratios[len(ratios) // 2][0]
        print(f"{'ok  ' if ok else 'FAIL'} {name} bf16: {len(ratios)} tensors, distance from float64 over "
              f"transformers bf16's: worst {r:.2f} ({k}: {e:.2e} vs {e_hf:.2e}), median {med:.2f}, {above} above 1; "
              f"loss {loss_err:.1e} vs {hf_loss_err:.1e} (ratio {loss_ratio:.2f})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
