#!/usr/bin/env python3
"""Reference outputs of transformers 5.17.0's Gemma 4 vision tower (Gemma4VisionModel + embed_vision) for
g4moe's vision tests, in float64: tests/fixtures/vision_tower/.

A tiny Gemma4ForConditionalGeneration (text weights moved from their init by make_fixtures.py's rules; vision: 2 encoder layers, 4 query heads over 2 KV heads of 8, patch 2,
position table 16, 2x2 pooling, standardize on; text: a 2-layer dense model) with every vision parameter and
the standardisation buffers moved away from their init, saved with save_pretrained (config.json,
model.safetensors), and for two images of different sizes (6x4 and 4x8 patches, no padding) fed one at a time:
  pixel_values.<i>    [N, 3*2*2]  patch pixels in [0, 1] (what the image processor hands the model)
  position_ids.<i>    [N, 2]      (x, y) of each patch, row-major over the image (int64)
  tower.<i>           [N/4, 16]   Gemma4VisionModel's last_hidden_state (pooled, scaled, standardised)
  soft_tokens.<i>     [N/4, 32]   embed_vision of it: what replaces the image's placeholder tokens
  d_soft_tokens.<i>   [N/4, 32]   random weights of the loss Σ soft_tokens · d_soft_tokens over both images
  grad.<name>                     its gradient for every vision_tower and embed_vision parameter
and the whole model on a row of text around both images (the processor's form: <|image>, one <|image|> per
soft token, <image|>; mm_token_type_ids 1 on the soft tokens), the two images padded into one pixel_values
batch as the image processor hands them over (padding patches at position (-1, -1)):
  input_ids, mm_token_type_ids [1, S]; pixel_values [2, 32, 12]; image_position_ids [2, 32, 2]
  logits [1, S, 96]; labels (-100 on the soft tokens), loss (float64 mean cross-entropy)
  image_text_grad.<name>          the loss's gradient for every parameter, text and vision
  image_text_d_soft_tokens        its gradient with respect to the soft tokens [14, 32]
  mask.<case>.*                   transformers' attention masks for packed and padded image-text rows
The text model uses use_bidirectional_attention "vision" with a window of 4, shorter than both images: on
sliding layers an image's tokens see its later tokens but never more than 3 positions back.
The RoPEs (HF computes their angles in float32 even for a float64 model) and the other float32 upcasts are
computed in float64 here (make_fixtures.py's true-fp64 internals); everything else is transformers' own code.

`--case moe` writes the same for a 26B-A4B-shaped text model (tests/fixtures/vision_moe): 8 experts top-2 beside
the dense MLP in every layer, k_eq_v on the full layer, use_bidirectional_attention "vision".
`--case e2b` writes the same for an E2B-shaped text model instead (tests/fixtures/vision_e2b): per-layer inputs,
KV-shared layers, no bidirectional attention (plain causal everywhere, as E2B/E4B). Its tower is the same tiny
one, with clipped linears as the released E2B tower has (bounds of about ±1, which clip a share of the values).

Usage: venv/bin/python tools/make_vision_fixture.py --out tests/fixtures/vision_tower   (CPU, seconds)
       venv/bin/python tools/make_vision_fixture.py --case e2b --out tests/fixtures/vision_e2b
       venv/bin/python tools/make_vision_fixture.py --case moe --out tests/fixtures/vision_moe
"""
import argparse
import os

import sys

import torch
from safetensors.torch import save_file
from transformers import Gemma4Config, Gemma4ForConditionalGeneration
from transformers.models.gemma4 import modeling_gemma4 as mg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (the true-fp64 internals of the text model)

VISION = dict(hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=8, patch_size=2, pooling_kernel_size=2,
              position_embedding_size=16, standardize=True)
TEXT = dict(vocab_size=96, hidden_size=32, intermediate_size=16, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=1, head_dim=16, global_head_dim=16, sliding_window=4,
            layer_types=["sliding_attention", "full_attention"], max_position_embeddings=64,
            hidden_size_per_layer_input=0, vocab_size_per_layer_input=96, enable_moe_block=False,
            use_bidirectional_attention="vision", final_logit_softcapping=30.0)
TEXT_E2B = dict(TEXT, num_hidden_layers=4, layer_types=["sliding_attention", "full_attention"] * 2,
                hidden_size_per_layer_input=8, num_kv_shared_layers=2, use_bidirectional_attention=None)
# A 26B-A4B-shaped text model: MoE blocks beside the dense MLP, k_eq_v full layers, bidirectional images.
TEXT_MOE = dict(TEXT, num_hidden_layers=3, layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                num_key_value_heads=2, intermediate_size=20, enable_moe_block=True, num_experts=8, top_k_experts=2,
                moe_intermediate_size=12, attention_k_eq_v=True)
BOI, IMAGE, EOI = 89, 90, 91  # <|image>, <|image|>, <image|> in this tiny vocabulary
IMAGES = [(6, 4), (4, 8)]  # (width, height) in patches


@torch.no_grad()
def rotary_fp64(self, x, position_ids):
    """Gemma4VisionRotaryEmbedding.forward with the angles in the model's dtype when it is wider than fp32."""
    cd = torch.promote_types(x.dtype, torch.float32)
    freqs = position_ids[..., None].to(cd) @ self.inv_freq[None, ...].to(cd)
    cos = self.recomposition_frequencies(freqs.cos() * self.attention_scaling)
    sin = self.recomposition_frequencies(freqs.sin() * self.attention_scaling)
    return cos.to(x.dtype), sin.to(x.dtype)


def attention_masks(model):
    """transformers' own masks (create_masks_for_vision_model) for image-text rows: a packed row of two documents
    with an image each (explicit position ids), and a batch of two rows with left padding (attention_mask).
    mask.<case>.<full|sliding> [B, S, S] holds 1 where query i sees key j."""
    tc = model.config.get_text_config()
    cases = {
        "packed": dict(mm=[[0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0]],
                       position_ids=[[0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2, 3, 4, 5, 6]]),
        "padded": dict(mm=[[0, 0, 0, 0, 0, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1, 1, 0, 0, 0]],
                       attention_mask=[[0, 0, 0, 1, 1, 1, 1, 1, 1, 1], [1] * 10]),
    }
    out = {}
    for name, c in cases.items():
        mm = torch.tensor(c["mm"])
        B, S = mm.shape
        position_ids = torch.tensor(c["position_ids"]) if "position_ids" in c else None
        attention_mask = torch.tensor(c["attention_mask"]) if "attention_mask" in c else None
        masks = mg.create_masks_for_vision_model(
            config=tc, inputs_embeds=torch.zeros(B, S, tc.hidden_size, dtype=torch.float64),
            attention_mask=attention_mask, past_key_values=None,
            position_ids=position_ids if position_ids is not None else torch.arange(S)[None].expand(B, S),
            block_sequence_ids=mg.get_block_sequence_ids_for_mask(mm, "cpu"))
        out[f"mask.{name}.mm"] = mm
        if position_ids is not None:
            out[f"mask.{name}.position_ids"] = position_ids
        if attention_mask is not None:
            out[f"mask.{name}.attention_mask"] = attention_mask
        for kind in ("full_attention", "sliding_attention"):
            out[f"mask.{name}.{kind.split('_')[0]}"] = (masks[kind][:, 0] == 0).long()
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="tests/fixtures/vision_tower")
    parser.add_argument("--case", choices=["tower", "e2b", "moe"], default="tower")
    args = parser.parse_args()
    text = {"tower": TEXT, "e2b": TEXT_E2B, "moe": TEXT_MOE}[args.case]
    vision_config = dict(VISION, use_clipped_linears=True) if args.case == "e2b" else VISION
    torch.set_num_threads(1)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(8000)
    config = Gemma4Config(text_config=text, vision_config=vision_config, audio_config=None, boi_token_id=BOI,
                          image_token_id=IMAGE, eoi_token_id=EOI)
    model = Gemma4ForConditionalGeneration(config).to(torch.float64).eval()
    mf.perturb_(model, gen, torch.float32)  # the text model's weights, by make_fixtures.py's rules
    vision, embed = model.model.vision_tower, model.model.embed_vision
    with torch.no_grad():
        for name, p in list(vision.named_parameters()) + list(embed.named_parameters()):
            if p.dim() == 1:  # norm weights
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
            elif "position_embedding_table" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
            else:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) / p.shape[-1] ** 0.5)
        # Clipped linears (E2B/E4B): bounds that clip a share of the values, inputs and outputs alike.
        for name, buf in vision.named_buffers():
            if name.endswith(("input_min", "output_min")):
                buf.copy_(-(0.8 + 0.4 * torch.rand((), generator=gen, dtype=torch.float64)))
            elif name.endswith(("input_max", "output_max")):
                buf.copy_(0.8 + 0.4 * torch.rand((), generator=gen, dtype=torch.float64))
        vision.std_bias.copy_(torch.randn(vision.std_bias.shape, generator=gen, dtype=torch.float64))
        vision.std_scale.copy_(0.5 + torch.rand(vision.std_scale.shape, generator=gen, dtype=torch.float64))
    os.makedirs(args.out, exist_ok=True)
    model.to(torch.float32).save_pretrained(args.out)  # float32 on disk, as g4moe reads it
    model = Gemma4ForConditionalGeneration.from_pretrained(args.out, dtype=torch.float64, attn_implementation="eager",
                                                           experts_implementation="eager").eval()
    mg.Gemma4VisionRotaryEmbedding.forward = rotary_fp64
    mf.set_fp64_internals(True)
    expected = {}
    for i, (w, h) in enumerate(IMAGES):
        pixels = torch.rand((1, w * h, 3 * VISION["patch_size"] ** 2), generator=gen, dtype=torch.float64)
        positions = torch.tensor([[[x, y] for y in range(h) for x in range(w)]], dtype=torch.long)
        with torch.no_grad():
            tower = model.model.vision_tower(pixel_values=pixels, pixel_position_ids=positions).last_hidden_state
            soft = model.model.embed_vision(inputs_embeds=tower)
        expected[f"pixel_values.{i}"] = pixels[0]
        expected[f"position_ids.{i}"] = positions[0]
        expected[f"tower.{i}"] = tower.reshape(-1, VISION["hidden_size"])
        expected[f"soft_tokens.{i}"] = soft.reshape(-1, text["hidden_size"])
        print(f"image {i}: {w}x{h} patches -> {tower.reshape(-1, VISION['hidden_size']).shape[0]} soft tokens, "
              f"tower std {float(tower.std()):.3f}")
    # Gradients of every vision parameter (and embed_vision's) for loss = Σ_i Σ soft_tokens_i · d_soft_tokens_i.
    model.zero_grad()
    for i, (w, h) in enumerate(IMAGES):
        tower = model.model.vision_tower(pixel_values=expected[f"pixel_values.{i}"][None],
                                         pixel_position_ids=expected[f"position_ids.{i}"][None]).last_hidden_state
        soft = model.model.embed_vision(inputs_embeds=tower).reshape(-1, text["hidden_size"])
        d_soft = torch.randn(soft.shape, generator=gen, dtype=torch.float64)
        (soft * d_soft).sum().backward()
        expected[f"d_soft_tokens.{i}"] = d_soft
    for name, p in list(model.model.vision_tower.named_parameters()) + list(model.model.embed_vision.named_parameters()):
        prefix = "model.vision_tower." if not name.startswith("embedding_") else "model.embed_vision."
        expected["grad." + prefix + name] = p.grad.detach().clone()
    model.zero_grad()

    # The whole model: text, image 0, text, image 1, text; both images padded to 32 patches in one batch.
    k2 = VISION["pooling_kernel_size"] ** 2
    ids = [2, 17, 33, BOI] + [IMAGE] * (IMAGES[0][0] * IMAGES[0][1] // k2) + [EOI, 45, 12, BOI]
    ids += [IMAGE] * (IMAGES[1][0] * IMAGES[1][1] // k2) + [EOI, 61, 9, 70]
    mm = [1 if t == IMAGE else 0 for t in ids]
    most = max(w * h for w, h in IMAGES)
    pixel_values = torch.zeros((len(IMAGES), most, 3 * VISION["patch_size"] ** 2), dtype=torch.float64)
    positions = torch.full((len(IMAGES), most, 2), -1, dtype=torch.long)
    for i in range(len(IMAGES)):
        n = expected[f"pixel_values.{i}"].shape[0]
        pixel_values[i, :n] = expected[f"pixel_values.{i}"]
        positions[i, :n] = expected[f"position_ids.{i}"]
    captured = []  # embed_vision's output: the soft tokens of both images, in order

    def keep(module, inputs, output):
        output.retain_grad()
        captured.append(output)

    hook = model.model.embed_vision.register_forward_hook(keep)
    out = model(input_ids=torch.tensor([ids]), pixel_values=pixel_values, image_position_ids=positions,
                mm_token_type_ids=torch.tensor([mm]), use_cache=False)
    hook.remove()
    labels = torch.tensor([[-100 if t == IMAGE else t for t in ids]])  # no loss on the soft tokens
    loss = mf.causal_lm_loss_fp64(out.logits, labels)
    loss.backward()
    expected["input_ids"] = torch.tensor([ids])
    expected["mm_token_type_ids"] = torch.tensor([mm])
    expected["labels"] = labels
    expected["logits"] = out.logits.detach()
    expected["loss"] = loss.detach().reshape(1)
    expected["image_text_d_soft_tokens"] = captured[0].grad.reshape(-1, text["hidden_size"])
    for name, p in model.named_parameters():
        if p.grad is not None and not name.startswith("lm_head"):
            expected["image_text_grad." + name] = p.grad.detach().clone()
    print(f"whole model: {len(ids)} tokens, logits std {float(out.logits.detach().std()):.3f}")
    if args.case == "tower":
        expected.update(attention_masks(model))
    save_file({k: v.contiguous() for k, v in expected.items()}, os.path.join(args.out, "expected.safetensors"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
