"""`g4moe generate --device cuda` (bf16) against transformers 5.17's own bf16 `generate` (eager attention, eager
experts) on the GPU, on the prompts of tests/fixtures/generate/<case>.json (longer than the sliding window).

Per prompt, greedy, 12 new tokens (min_new_tokens 12 in both: no stop token): the two token lists must be equal, or their first difference
must be a near-tie: on the common prefix, the float64 model's logits of the two tokens differ by no more than
transformers' own bf16 logits there differ from float64 (the largest |bf16 - float64| over the vocabulary),
i.e. the two tokens are within the noise of a bf16 run, so either bf16 implementation may pick either. Prints
one line per prompt and exits with the number of failures.

Usage (GPU machine): python3 tests/cuda/generate_device_test.py G4MOE_BINARY
"""
import json
import subprocess
import sys

import torch
from transformers import AutoModelForCausalLM

NEW = 12
g4moe = sys.argv[1]
failures = 0
for case in ["moe_26b", "dense_e2b", "dense_31b"]:
    fixture = json.load(open(f"tests/fixtures/generate/{case}.json"))
    model_dir = f"tests/fixtures/{case}"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, attn_implementation="eager",
                                                 experts_implementation="eager").to("cuda").eval()
    model64 = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64, attn_implementation="eager",
                                                   experts_implementation="eager").to("cuda").eval()
    with open("/tmp/g4_generate_prompts.json", "w") as f:
        json.dump({"input_ids": fixture["input_ids"]}, f)
    run = subprocess.run([g4moe, "generate", "--model", model_dir, "--input", "/tmp/g4_generate_prompts.json",
                          "--max-new-tokens", str(NEW), "--min-new-tokens", str(NEW), "--temperature", "0", "--json",
                          "--device", "cuda"], capture_output=True, text=True)
    if run.returncode != 0:
        print(f"FAIL {case}: g4moe generate --device cuda: {run.stderr.strip()[-300:]}")
        failures += 1
        continue
    ours = json.loads(run.stdout)["output_ids"]
    for i, prompt in enumerate(fixture["input_ids"]):
        with torch.no_grad():
            out = model.generate(input_ids=torch.tensor([prompt], device="cuda"), do_sample=False,
                                 max_new_tokens=NEW, min_new_tokens=NEW, output_scores=True,
                                 return_dict_in_generate=True)
        theirs = out.sequences[0, len(prompt):].tolist()
        if ours[i] == theirs:
            print(f"ok   {case} prompt {i}: {NEW} tokens equal")
            continue
        step = next(t for t in range(NEW) if ours[i][t] != theirs[t])
        prefix = torch.tensor([prompt + theirs[:step]], device="cuda")
        with torch.no_grad():
            logits64 = model64(input_ids=prefix, use_cache=False).logits[0, -1]
        bf16 = out.scores[step][0].double()
        finite = torch.isfinite(bf16)  # min_new_tokens sets the stop tokens to -inf
        noise = float((bf16[finite] - logits64[finite]).abs().max())
        margin = float((logits64[ours[i][step]] - logits64[theirs[step]]).abs())
        near_tie = margin <= noise
        print(("ok   " if near_tie else "FAIL ") + f"{case} prompt {i}: first difference at step {step}: "
              f"float64 margin between the two tokens {margin:.4f}, transformers' bf16 error there {noise:.4f} "
              f"({'a near-tie' if near_tie else 'not a near-tie'})")
        failures += 0 if near_tie else 1
sys.exit(failures)
