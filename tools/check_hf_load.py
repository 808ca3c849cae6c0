#!/usr/bin/env python3
"""Loads a checkpoint g4moe wrote with transformers (eager, fp32) and compares its logits with g4moe's.

Usage (needs torch + transformers 5.17; the GPU machine has both):
  build/g4moe score --model CKPT --input in.json --output g4_logits.safetensors   # here
  python3 tools/check_hf_load.py CKPT in.json g4_logits.safetensors               # there
Prints one JSON line: the class transformers built, its loss, and the relative error of the logits.
"""
import json, sys, torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM
m = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32, attn_implementation="eager",
                                         experts_implementation="eager").eval()
ids = torch.tensor(json.load(open(sys.argv[2]))["input_ids"])
with torch.no_grad():
    out = m(input_ids=ids, labels=ids, use_cache=False)
g4 = load_file(sys.argv[3])["logits"]
rel = ((out.logits - g4).norm() / out.logits.norm()).item()
print(json.dumps({"class": type(m).__name__, "hf_loss": out.loss.item(), "logits_rel_err": rel,
                  "max_abs": (out.logits - g4).abs().max().item()}))
