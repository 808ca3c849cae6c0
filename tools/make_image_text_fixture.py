#!/usr/bin/env python3
"""Image-text end to end against transformers 5.17 in float64: tests/fixtures/image_text/.

The model is tests/fixtures/vision_tower's (a tiny Gemma4ForConditionalGeneration: 2 vision layers, patch 2,
2x2 pooling, position table 16, standardisation; 2 text layers with use_bidirectional_attention "vision").
The image is a real photograph, tests/fixtures/images/camera_gray.jpg (256x256, grayscale JPEG), through
transformers.image_utils.load_image and Gemma4ImageProcessorPil(patch_size=2, pooling_kernel_size=2,
max_soft_tokens=70): 32x32 pixels, 16x16 patches, 64 soft tokens. Two rows of the same length, the first
with one image, the second with two, each image written as <|image> + 64 x <|image|> + <image|> (ids 89, 90,
91 of the tiny vocabulary) between random text ids; labels -100 on the image tokens. transformers'
model(input_ids, pixel_values, image_position_ids, mm_token_type_ids) as the processor's output feeds it, in
float64 with make_fixtures.py's true-fp64 internals, gives:
  input.json              input_ids, labels, mm_token_type_ids and "images" (paths relative to input.json):
                          what `g4moe score --input` reads
  expected.safetensors    logits [2, S, 96] and loss (mean cross-entropy over the labels)
So `g4moe score --model tests/fixtures/vision_tower --input tests/fixtures/image_text/input.json` checks the
C++ image pipeline (decode, resize, patchify), the tower, the merge and the text model together.

Usage: python3 tools/make_image_text_fixture.py   (CPU, seconds; transformers 5.17, Pillow 13)
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import Gemma4ForConditionalGeneration
from transformers.image_utils import load_image
from transformers.models.gemma4 import modeling_gemma4 as mg
from transformers.models.gemma4.image_processing_pil_gemma4 import Gemma4ImageProcessorPil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (the true-fp64 internals of the text model)
from make_vision_fixture import BOI, EOI, IMAGE, rotary_fp64  # noqa: E402

MODEL = "tests/fixtures/vision_tower"
OUT = "tests/fixtures/image_text"
PHOTO = "camera_gray.jpg"


def main():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(31)
    processor = Gemma4ImageProcessorPil(patch_size=2, pooling_kernel_size=2, max_soft_tokens=70)
    image = load_image(os.path.join("tests/fixtures/images", PHOTO))
    out = processor([image, image, image], return_tensors="pt")
    soft = int(out["num_soft_tokens_per_image"][0])
    tokens = [BOI] + [IMAGE] * soft + [EOI]

    def text(n):
        return torch.randint(3, 89, (n,), generator=gen).tolist()

    rows = [[2] + text(9) + tokens + text(74), [2] + text(4) + tokens + text(5) + tokens + text(8)]
    assert len(rows[0]) == len(rows[1]), [len(r) for r in rows]
    mm = [[1 if t == IMAGE else 0 for t in r] for r in rows]
    labels = [[-100 if t in (BOI, IMAGE, EOI) else t for t in r] for r in rows]

    model = Gemma4ForConditionalGeneration.from_pretrained(MODEL, dtype=torch.float64,
                                                           attn_implementation="eager").eval()
    mg.Gemma4VisionRotaryEmbedding.forward = rotary_fp64
    mf.set_fp64_internals(True)
    with torch.no_grad():
        result = model(input_ids=torch.tensor(rows), pixel_values=out["pixel_values"].to(torch.float64),
                       image_position_ids=out["image_position_ids"], mm_token_type_ids=torch.tensor(mm),
                       use_cache=False)
    loss = mf.causal_lm_loss_fp64(result.logits, torch.tensor(labels))
    os.makedirs(OUT, exist_ok=True)
    photo = os.path.join("..", "images", PHOTO)
    with open(os.path.join(OUT, "input.json"), "w") as f:
        json.dump({"input_ids": rows, "labels": labels, "mm_token_type_ids": mm,
                   "images": [[photo], [photo, photo]]}, f)
    save_file({"logits": result.logits.contiguous(), "loss": loss.reshape(1)},
              os.path.join(OUT, "expected.safetensors"))
    print(f"{len(rows)} rows of {len(rows[0])} tokens, {soft} soft tokens per image, loss {float(loss):.6f}")


if __name__ == "__main__":
    main()
