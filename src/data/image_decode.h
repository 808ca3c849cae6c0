// image_decode.h: reads a JPEG or PNG file into 8-bit RGB exactly as transformers' load_image does with
// Pillow: the EXIF orientation applied (ImageOps.exif_transpose), then convert("RGB"): gray replicated into
// the three channels, alpha and palette transparency dropped, 16-bit colour channels cut to their high byte.
// JPEG goes through libjpeg(-turbo) with its defaults (integer IDCT, fancy upsampling), as Pillow's does.
//
// Refused, each with one line naming the file: anything but JPEG or PNG, CMYK/YCCK JPEG, 16-bit grayscale PNG
// (Pillow clips it to 0..255 rather than scaling it), truncated or corrupt data, and images over
// kMaxImagePixels (Pillow's decompression-bomb limit).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace g4 {

inline constexpr std::int64_t kMaxImagePixels = 178956970;

struct RgbImage {
  std::int64_t width = 0, height = 0;
  std::vector<std::uint8_t> pixels;  // [height, width, 3], rows top to bottom
};

// `name` is what errors call the bytes (the file's path).
RgbImage decode_image(std::span<const std::uint8_t> bytes, const std::string& name);
RgbImage read_image_file(const std::string& path);

// EXIF orientation (1..8) as the TIFF tag 0x0112 of an EXIF block ("Exif\0\0" + TIFF, or bare TIFF) gives
// it; 1 when absent or unreadable.
int exif_orientation(std::span<const std::uint8_t> exif);
// The image turned upright for an EXIF orientation, as PIL.ImageOps.exif_transpose turns it.
RgbImage apply_orientation(const RgbImage& image, int orientation);

}  // namespace g4
