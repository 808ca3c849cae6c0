#!/usr/bin/env python3
"""Reference outputs of transformers 5.17.0's `generate` for g4moe's generation tests (tests/fixtures/generate/).

For three of the model fixtures (moe_26b: MoE + attention_k_eq_v; dense_e2b: KV-shared layers and per-layer
inputs; dense_31b: a dense k_eq_v model), all with a sliding window of 4 tokens, it writes `<case>.json`:
prompts of different lengths (most longer than the window) and, for several settings (plain greedy, greedy
with a repetition penalty, and the same with min_new_tokens, which keeps a row from stopping early), the tokens `model.generate` returns for each prompt
alone (greedy, its own KV cache, the checkpoint's generation_config.json: eos_token_id 1 stops a row), with
the smallest top-1/top-2 margin of the processed scores over every step. The model runs in float64 with the
true-fp64 internals of make_fixtures.py (eager attention, eager experts); g4moe's fp32 generation must give
the same tokens, which is meaningful only where no step is a near-tie: the script refuses a fixture whose
smallest margin is below MIN_MARGIN.

It also writes `sampling.json`: random logits run through the logits processors and warpers that
`model._get_logits_processor` builds for a GenerationConfig (repetition penalty, min_new_tokens, temperature,
top-k, top-p, min-p, in transformers' order), in float32 as generate runs them, with -inf where a token was
filtered.

Usage: venv/bin/python tools/make_generate_fixtures.py --out tests/fixtures/generate   (CPU, ~10 s)
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (the true-fp64 internals and the model loader)
from transformers import AutoModelForCausalLM, GenerationConfig  # noqa: E402
from transformers.generation.logits_process import LogitsProcessorList  # noqa: E402

MIN_MARGIN = 1e-3  # g4moe's fp32 logits lie ~1e-5 from float64
CASES = ["moe_26b", "dense_e2b", "dense_31b"]
SETTINGS = [
    {"max_new_tokens": 12},
    {"max_new_tokens": 10, "repetition_penalty": 1.5},
    {"max_new_tokens": 10, "min_new_tokens": 8, "repetition_penalty": 1.5},
]


def make_prompts(vocab, gen):
    lengths = [11, 3, 17, 6]
    return [[2] + torch.randint(3, vocab, (n - 1,), generator=gen).tolist() for n in lengths]


def generate_case(name, fixtures, gen):
    path = os.path.join(fixtures, name)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float64, attn_implementation="eager", experts_implementation="eager"
    )
    model.eval()
    mf.check_impl(model)
    vocab = model.config.get_text_config().vocab_size
    prompts = make_prompts(vocab, gen)
    runs = []
    for setting in SETTINGS:
        outputs, margins = [], []
        for prompt in prompts:
            with torch.no_grad():
                out = model.generate(
                    input_ids=torch.tensor([prompt]), do_sample=False, output_scores=True,
                    return_dict_in_generate=True, **setting,
                )
            new = out.sequences[0, len(prompt):].tolist()
            outputs.append(new)
            for step in out.scores:
                top = torch.topk(step[0], 2).values
                margins.append(float(top[0] - top[1]))
        margin = min(margins)
        assert margin >= MIN_MARGIN, f"{name} {setting}: a step is a near-tie (margin {margin:.3g})"
        runs.append({"settings": setting, "output_ids": outputs, "min_margin": margin})
        print(f"{name} {setting}: lengths {[len(o) for o in outputs]}, min margin {margin:.3g}")
    return {"model": f"tests/fixtures/{name}", "input_ids": prompts, "runs": runs}


def sampling_cases(model, gen):
    cases = []
    vocab, eos = 40, [1, 7]
    settings = [
        {"do_sample": True, "temperature": 0.7},
        {"do_sample": True, "top_k": 5},
        {"do_sample": True, "top_k": 0, "top_p": 0.6},
        {"do_sample": True, "top_k": 0, "min_p": 0.2},
        {"do_sample": True, "temperature": 1.3, "top_k": 12, "top_p": 0.9, "min_p": 0.05},
        {"do_sample": True, "repetition_penalty": 1.7, "top_k": 0},
        {"do_sample": False, "repetition_penalty": 0.8},
        {"do_sample": False, "min_new_tokens": 3},
        {"do_sample": True, "min_new_tokens": 3, "top_k": 4, "temperature": 0.5},
    ]
    for setting in settings:
        for _ in range(3):
            prompt_len, generated = 5, int(torch.randint(0, 5, (1,), generator=gen))
            seen = torch.randint(0, vocab, (1, prompt_len + generated), generator=gen)
            scores = (torch.randn(1, vocab, generator=gen, dtype=torch.float64) * 3).float()
            config = GenerationConfig(eos_token_id=eos, pad_token_id=0, **setting)
            model._prepare_special_tokens(config, kwargs_has_attention_mask=False, device="cpu")
            processors = model._get_logits_processor(
                generation_config=config, input_ids_seq_length=prompt_len, encoder_input_ids=seen[:, :prompt_len],
                prefix_allowed_tokens_fn=None, logits_processor=LogitsProcessorList(), device="cpu", model_kwargs={},
            )
            processed = processors(seen, scores.clone())
            cases.append({
                "settings": setting, "eos_token_id": eos, "prompt_length": prompt_len, "seen": seen[0].tolist(),
                "logits": scores[0].tolist(),
                "processed": [None if v == float("-inf") else v for v in processed[0].tolist()],
                "processors": [type(p).__name__ for p in processors],
            })
    return cases


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="tests/fixtures/generate")
    parser.add_argument("--fixtures", default="tests/fixtures")
    args = parser.parse_args()
    torch.set_num_threads(1)
    mf.set_fp64_internals(True)
    gen = torch.Generator().manual_seed(4242)
    os.makedirs(args.out, exist_ok=True)
    model = None
    for name in CASES:
        case = generate_case(name, args.fixtures, gen)
        with open(os.path.join(args.out, f"{name}.json"), "w") as f:
            json.dump(case, f, indent=1)
            f.write("\n")
    model = AutoModelForCausalLM.from_pretrained(os.path.join(args.fixtures, "dense_e2b"), dtype=torch.float32)
    with open(os.path.join(args.out, "sampling.json"), "w") as f:
        json.dump({"cases": sampling_cases(model, gen)}, f)
        f.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
