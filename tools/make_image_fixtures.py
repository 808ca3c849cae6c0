#!/usr/bin/env python3
"""Test images and transformers 5.17's preprocessed pixels for g4moe's image processor: tests/fixtures/images/.

The images are real photographs from scikit-image's bundled data set, all free of copyright (chelsea, coffee:
CC0; camera: CC0; astronaut, rocket: public domain), cut, scaled and re-encoded with Pillow into small files of
the kinds users hand over (and two that g4moe refuses: refused_*): JPEG (4:2:0, 4:4:4 progressive, grayscale, EXIF orientations 3, 6 and 8), PNG
(RGB interlaced, RGBA, palette with transparency, 16-bit RGB, 1-bit, EXIF in an eXIf chunk), sizes from 20x14
to 1000x10, landscape, portrait and square, one already at its target size (no resize).

For each case (cases.json: the file and the processor settings), transformers.image_utils.load_image (EXIF
transpose, convert("RGB")) and Gemma4ImageProcessorPil give, in expected.safetensors:
  <case>.pixels_u8      [N, 3*p*p] uint8: the pixel values times 255, when they are exactly k/255 (this
                        script asserts float32(u8 / 255) reproduces them bit for bit), or
  <case>.pixel_values   [N, 3*p*p] float32 as they are (the normalised case);
  <case>.positions      [N, 2] int64 (x, y), padding patches left out;
and cases.json records num_soft_tokens. The resize is Pillow's, and Pillow's pass order changed in 13.0 (vertical
first when the height shrinks by more than twice as many pixels as the width): the fixture is made with
Pillow 13.0 (asserted below); Pillow 12 gives one or two levels' difference on chelsea_420. Run from the repository root with transformers 5.17, Pillow and
scikit-image installed:  python3 tools/make_image_fixtures.py
"""
import json
import os
import struct
import zlib

import numpy as np
import PIL
import PIL.Image
import skimage
from safetensors.numpy import save_file
from transformers.image_utils import load_image
from transformers.models.gemma4.image_processing_pil_gemma4 import Gemma4ImageProcessorPil

OUT = "tests/fixtures/images"
SRC = os.path.join(os.path.dirname(skimage.__file__), "data")


def photo(name):
    return PIL.Image.open(os.path.join(SRC, name))


def exif_with_orientation(value):
    exif = PIL.Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def make_images():
    """Writes the test images; returns the cases as (case, file, processor kwargs)."""
    os.makedirs(OUT, exist_ok=True)
    chelsea, coffee, astronaut = photo("chelsea.png"), photo("coffee.png"), photo("astronaut.png")
    camera, rocket = photo("camera.png"), photo("rocket.jpg")

    def save(file, image, **kwargs):
        image.save(os.path.join(OUT, file), **kwargs)

    save("chelsea_420.jpg", chelsea.convert("RGB"), quality=90)  # 451x300, 4:2:0
    save("coffee_444_progressive.jpg", coffee.convert("RGB").crop((101, 57, 498, 320)), quality=80,
         subsampling=0, progressive=True)  # 397x263
    save("camera_gray.jpg", camera.crop((128, 64, 384, 320)), quality=85)  # 256x256, one component
    save("rocket_exif6.jpg", rocket.resize((213, 320), PIL.Image.LANCZOS), quality=88,
         exif=exif_with_orientation(6))  # stored 213x320, upright 320x213
    save("astronaut_exif3.jpg", astronaut.convert("RGB").crop((0, 0, 300, 180)), quality=85,
         exif=exif_with_orientation(3))
    save("chelsea_exif8.jpg", chelsea.convert("RGB").crop((40, 20, 280, 200)), quality=92,
         exif=exif_with_orientation(8))
    rgba = astronaut.convert("RGB").crop((100, 60, 300, 180)).convert("RGBA")
    alpha = np.tile(np.linspace(0, 255, 200, dtype=np.uint8), (120, 1))
    rgba.putalpha(PIL.Image.fromarray(alpha))
    save("astronaut_rgba.png", rgba)  # 200x120
    palette = coffee.convert("RGB").crop((200, 100, 360, 220)).quantize(colors=64)
    save("coffee_palette.png", palette, transparency=3)  # 160x120, tRNS on one entry
    rgb = np.asarray(chelsea.convert("RGB").crop((150, 60, 270, 150)), dtype=np.uint16)
    noise = np.random.default_rng(7).integers(0, 256, rgb.shape, dtype=np.uint16)
    rgb16 = rgb * 256 + noise  # high byte is the photo
    save("chelsea_rgb16.png", _rgb16_png(rgb16))  # 120x90
    save("camera_1bit.png", camera.crop((180, 100, 340, 196)).point(lambda v: 255 if v > 110 else 0).convert("1"))
    save("astronaut_interlaced.png", _interlaced_png(astronaut.convert("RGB").crop((50, 50, 290, 210))))
    save("coffee_exif8.png", coffee.convert("RGB").crop((0, 0, 150, 100)), exif=exif_with_orientation(8))
    save("coffee_strip_wide.png", coffee.convert("RGB").resize((1000, 10), PIL.Image.LANCZOS))
    save("chelsea_strip_tall.jpg", chelsea.convert("RGB").resize((12, 900), PIL.Image.LANCZOS), quality=90)
    save("astronaut_tiny.png", astronaut.convert("RGB").resize((20, 14), PIL.Image.LANCZOS))
    save("coffee_target_size.png", coffee.convert("RGB").resize((216, 168), PIL.Image.LANCZOS))  # no resize (patch 8)
    # Refused by g4moe (tests/data/image_processor_test.cpp checks the error lines).
    save("refused_cmyk.jpg", chelsea.convert("RGB").crop((0, 0, 32, 24)).convert("CMYK"), quality=90)
    gray16 = (np.asarray(camera.crop((0, 0, 32, 24)), dtype=np.uint16) * 257).astype(np.uint16)
    save("refused_gray16.png", PIL.Image.fromarray(gray16))
    cases = [
        ("chelsea_420", "chelsea_420.jpg", {"max_soft_tokens": 70}),
        ("rocket_exif6", "rocket_exif6.jpg", {"max_soft_tokens": 70}),
        ("coffee_strip_wide", "coffee_strip_wide.png", {"max_soft_tokens": 70}),
        ("astronaut_tiny", "astronaut_tiny.png", {"max_soft_tokens": 140}),
        # The rest with 8-pixel patches (a quarter of the fixture's bytes; the same code paths).
        ("coffee_444_progressive", "coffee_444_progressive.jpg", {"max_soft_tokens": 70, "patch_size": 8}),
        ("camera_gray", "camera_gray.jpg", {"max_soft_tokens": 70, "patch_size": 8}),
        ("astronaut_exif3", "astronaut_exif3.jpg", {"max_soft_tokens": 70, "patch_size": 8}),
        ("chelsea_exif8", "chelsea_exif8.jpg", {"max_soft_tokens": 70, "patch_size": 8}),
        ("astronaut_rgba", "astronaut_rgba.png", {"max_soft_tokens": 70, "patch_size": 8}),
        ("coffee_palette", "coffee_palette.png", {"max_soft_tokens": 70, "patch_size": 8}),
        ("chelsea_rgb16", "chelsea_rgb16.png", {"max_soft_tokens": 70, "patch_size": 8}),
        ("camera_1bit", "camera_1bit.png", {"max_soft_tokens": 70, "patch_size": 8}),
        ("astronaut_interlaced", "astronaut_interlaced.png", {"max_soft_tokens": 70, "patch_size": 8}),
        ("coffee_exif8_png", "coffee_exif8.png", {"max_soft_tokens": 70, "patch_size": 8}),
        ("chelsea_strip_tall", "chelsea_strip_tall.jpg", {"max_soft_tokens": 70, "patch_size": 8}),
        ("coffee_target_size", "coffee_target_size.png", {"max_soft_tokens": 70, "patch_size": 8}),
        ("astronaut_tiny_normalized", "astronaut_tiny.png",
         {"max_soft_tokens": 70, "patch_size": 8, "do_normalize": True, "image_mean": [0.5, 0.4, 0.3],
          "image_std": [0.25, 0.5, 0.7]}),
    ]
    return cases


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _rgb16_png(rgb16):
    """A 16-bit RGB PNG (Pillow cannot write one from an array): written with the png chunks by hand."""
    h, w, _ = rgb16.shape
    raw = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))

    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
    png += _png_chunk(b"IDAT", zlib.compress(raw, 9)) + _png_chunk(b"IEND", b"")
    return _Raw(png)


def _interlaced_png(image):
    """An Adam7-interlaced 8-bit RGB PNG (Pillow writes only non-interlaced ones), by hand."""
    a = np.asarray(image)
    h, w, _ = a.shape
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    raw = b""
    for x0, y0, dx, dy in passes:
        sub = a[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        raw += b"".join(b"\x00" + row.tobytes() for row in sub)

    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1))
    png += _png_chunk(b"IDAT", zlib.compress(raw, 9)) + _png_chunk(b"IEND", b"")
    return _Raw(png)


class _Raw:
    """Bytes that save() writes as they are."""

    def __init__(self, data):
        self.data = data

    def save(self, path, **kwargs):
        with open(path, "wb") as f:
            f.write(self.data)


def main():
    assert PIL.__version__.split(".")[0] == "13", f"made with Pillow 13, not {PIL.__version__}"
    cases = make_images()
    tensors, manifest = {}, []
    for case, file, kwargs in cases:
        image = load_image(os.path.join(OUT, file))
        out = Gemma4ImageProcessorPil(**kwargs)(image, return_tensors="np")
        soft = int(out["num_soft_tokens_per_image"][0])
        positions = out["image_position_ids"][0]
        real = positions[:, 0] >= 0
        pixels = out["pixel_values"][0][real].astype(np.float32)
        positions = positions[real].astype(np.int64)
        if kwargs.get("do_normalize"):
            tensors[f"{case}.pixel_values"] = np.ascontiguousarray(pixels)
        else:
            u8 = np.round(pixels.astype(np.float64) * 255).astype(np.uint8)
            assert np.array_equal((u8.astype(np.float64) * (1 / 255)).astype(np.float32), pixels), case
            tensors[f"{case}.pixels_u8"] = np.ascontiguousarray(u8)
        tensors[f"{case}.positions"] = np.ascontiguousarray(positions)
        width, height = image.size
        manifest.append({"case": case, "file": file, "processor": kwargs, "num_soft_tokens": soft,
                         "upright_size": [width, height]})
        print(f"{case}: {file} {width}x{height} -> {len(positions)} patches, {soft} soft tokens")
    save_file(tensors, os.path.join(OUT, "expected.safetensors"))
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
