#include "data/image_processor.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "core/error.h"

namespace g4 {
namespace {

// Pillow's fixed-point resampling of 8-bit images (libImaging/Resample.c): coefficients in double, rounded
// to integers with kPrecisionBits fractional bits; sums start at one half and are floored, then clamped.
constexpr int kPrecisionBits = 32 - 8 - 2;

double bicubic(double x) {  // Keys' cubic with a = -0.5, support 2
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// The taps of one output coordinate: the first input index and an integer weight per input.
struct Taps {
  std::int64_t first = 0;
  std::vector<std::int32_t> weights;
};

std::vector<Taps> bicubic_taps(std::int64_t in_size, std::int64_t out_size) {
  const double scale = static_cast<double>(static_cast<float>(in_size)) / static_cast<double>(out_size);
  const double filter_scale = std::max(scale, 1.0);
  const double support = 2.0 * filter_scale;
  std::vector<Taps> taps(static_cast<std::size_t>(out_size));
  std::vector<double> w;
  for (std::int64_t o = 0; o < out_size; ++o) {
    const double center = (static_cast<double>(o) + 0.5) * scale;
    const double inv = 1.0 / filter_scale;
    std::int64_t lo = static_cast<std::int64_t>(static_cast<int>(center - support + 0.5));  // C's (int) cast
    std::int64_t hi = static_cast<std::int64_t>(static_cast<int>(center + support + 0.5));
    lo = std::max<std::int64_t>(lo, 0);
    hi = std::min(hi, in_size);
    w.assign(static_cast<std::size_t>(std::max<std::int64_t>(hi - lo, 0)), 0.0);
    double total = 0.0;
    for (std::size_t i = 0; i < w.size(); ++i) {
      w[i] = bicubic((static_cast<double>(static_cast<std::int64_t>(i) + lo) - center + 0.5) * inv);
      total += w[i];
    }
    Taps& t = taps[static_cast<std::size_t>(o)];
    t.first = lo;
    for (double v : w) {
      if (total != 0.0) v /= total;
      const double fixed = v * static_cast<double>(1 << kPrecisionBits);
      t.weights.push_back(static_cast<std::int32_t>(v < 0 ? -0.5 + fixed : 0.5 + fixed));
    }
  }
  return taps;
}

std::uint8_t clip8(std::int32_t sum) {
  return static_cast<std::uint8_t>(std::clamp(sum >> kPrecisionBits, 0, 255));
}

// One separable pass: out[y][x][c] from in along x (horizontal) or y (vertical).
RgbImage resample_horizontal(const RgbImage& in, std::int64_t width) {
  const std::vector<Taps> taps = bicubic_taps(in.width, width);
  RgbImage out{width, in.height, std::vector<std::uint8_t>(static_cast<std::size_t>(width * in.height * 3))};
  for (std::int64_t y = 0; y < in.height; ++y) {
    const std::uint8_t* row = &in.pixels[static_cast<std::size_t>(y * in.width * 3)];
    for (std::int64_t x = 0; x < width; ++x) {
      const Taps& t = taps[static_cast<std::size_t>(x)];
      std::int32_t sum[3] = {1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1)};
      for (std::size_t i = 0; i < t.weights.size(); ++i)
        for (int c = 0; c < 3; ++c)
          sum[c] += row[(t.first + static_cast<std::int64_t>(i)) * 3 + c] * t.weights[i];
      for (int c = 0; c < 3; ++c)
        out.pixels[static_cast<std::size_t>((y * width + x) * 3 + c)] = clip8(sum[c]);
    }
  }
  return out;
}

RgbImage resample_vertical(const RgbImage& in, std::int64_t height) {
  const std::vector<Taps> taps = bicubic_taps(in.height, height);
  RgbImage out{in.width, height, std::vector<std::uint8_t>(static_cast<std::size_t>(in.width * height * 3))};
  const std::int64_t stride = in.width * 3;
  for (std::int64_t y = 0; y < height; ++y) {
    const Taps& t = taps[static_cast<std::size_t>(y)];
    for (std::int64_t v = 0; v < stride; ++v) {
      std::int32_t sum = 1 << (kPrecisionBits - 1);
      for (std::size_t i = 0; i < t.weights.size(); ++i)
        sum += in.pixels[static_cast<std::size_t>((t.first + static_cast<std::int64_t>(i)) * stride + v)] *
               t.weights[i];
      out.pixels[static_cast<std::size_t>(y * stride + v)] = clip8(sum);
    }
  }
  return out;
}

std::int64_t floor_to_int(double v) {
  return static_cast<std::int64_t>(std::floor(v));
}

}  // namespace

ImageProcessorConfig parse_image_processor_config(const Json& doc, const std::string& where) {
  check(doc.is_object(), "expected a JSON object (", where, ")");
  const Json& p = doc.contains("image_processor") ? doc["image_processor"] : doc;
  check(p.is_object(), "\"image_processor\" is not an object (", where, ")");
  ImageProcessorConfig c;
  auto integer = [&](const char* key, std::int64_t& out) {
    if (p.contains(key) && !p[key].is_null()) out = json_int(p[key], key, where);
  };
  auto flag = [&](const char* key, bool& out) {
    if (!p.contains(key) || p[key].is_null()) return;
    check(p[key].is_boolean(), "\"", key, "\" must be true or false (", where, ")");
    out = p[key].get<bool>();
  };
  auto number = [&](const Json& v, const std::string& what) {
    check(v.is_number(), "\"", what, "\" must be a number (", where, ")");
    const double d = v.get<double>();
    check(std::isfinite(d), "\"", what, "\" must be finite (", where, ")");
    return d;
  };
  auto triple = [&](const char* key, std::array<double, 3>& out) {
    if (!p.contains(key) || p[key].is_null()) return;
    const Json& v = p[key];
    if (v.is_number()) {
      out.fill(number(v, key));
      return;
    }
    check(v.is_array() && v.size() == 3, "\"", key, "\" must be a number or a list of 3 (", where, ")");
    for (std::size_t i = 0; i < 3; ++i) out[i] = number(v[i], key);
  };
  integer("patch_size", c.patch_size);
  integer("max_soft_tokens", c.max_soft_tokens);
  integer("pooling_kernel_size", c.pooling_kernel_size);
  flag("do_resize", c.do_resize);
  flag("do_rescale", c.do_rescale);
  flag("do_normalize", c.do_normalize);
  if (p.contains("rescale_factor") && !p["rescale_factor"].is_null())
    c.rescale_factor = number(p["rescale_factor"], "rescale_factor");
  triple("image_mean", c.image_mean);
  triple("image_std", c.image_std);
  if (p.contains("do_convert_rgb") && !p["do_convert_rgb"].is_null())
    check(p["do_convert_rgb"] == true, "\"do_convert_rgb\": false is not supported (", where, ")");
  if (p.contains("resample") && !p["resample"].is_null())
    check(p["resample"].is_number_integer() && p["resample"].get<std::int64_t>() == 3,
          "\"resample\": only 3 (bicubic) is supported (", where, ")");
  const std::int64_t supported[] = {70, 140, 280, 560, 1120};
  check(std::find(std::begin(supported), std::end(supported), c.max_soft_tokens) != std::end(supported),
        "\"max_soft_tokens\" must be one of 70, 140, 280, 560, 1120, not ", c.max_soft_tokens, " (", where,
        ")");
  check(c.patch_size >= 1 && c.patch_size <= 1024, "\"patch_size\" must be in 1..1024 (", where, ")");
  check(c.pooling_kernel_size >= 1 && c.pooling_kernel_size <= 64,
        "\"pooling_kernel_size\" must be in 1..64 (", where, ")");
  for (double s : c.image_std) check(s != 0.0, "\"image_std\" must not be 0 (", where, ")");
  return c;
}

ImageProcessorConfig load_image_processor_config(const std::string& model_dir, std::int64_t patch_size,
                                                 std::int64_t pooling_kernel_size) {
  for (const char* file : {"processor_config.json", "preprocessor_config.json"}) {
    const std::string path = (std::filesystem::path(model_dir) / file).string();
    if (std::filesystem::exists(path)) return parse_image_processor_config(read_json_file(path), path);
  }
  ImageProcessorConfig c;
  c.patch_size = patch_size;
  c.pooling_kernel_size = pooling_kernel_size;
  return c;
}

std::array<std::int64_t, 2> target_image_size(std::int64_t height, std::int64_t width,
                                              const ImageProcessorConfig& config, const std::string& name) {
  const std::int64_t max_patches =
      config.max_soft_tokens * config.pooling_kernel_size * config.pooling_kernel_size;
  const double total_px = static_cast<double>(height * width);
  const double target_px = static_cast<double>(max_patches * config.patch_size * config.patch_size);
  const double factor = std::sqrt(target_px / total_px);
  const std::int64_t side = config.pooling_kernel_size * config.patch_size;
  std::int64_t h = floor_to_int(factor * static_cast<double>(height) / static_cast<double>(side)) * side;
  std::int64_t w = floor_to_int(factor * static_cast<double>(width) / static_cast<double>(side)) * side;
  check(h > 0 || w > 0, name, ": image of ", width, "x", height, " pixels would be resized to nothing");
  const std::int64_t max_side = config.max_soft_tokens * side;
  if (h == 0) {
    h = side;
    w = std::min(floor_to_int(static_cast<double>(width) / static_cast<double>(height)) * side, max_side);
  } else if (w == 0) {
    w = side;
    h = std::min(floor_to_int(static_cast<double>(height) / static_cast<double>(width)) * side, max_side);
  }
  check(static_cast<double>(h * w) <= target_px, name, ": image of ", width, "x", height,
        " pixels does not fit the patch budget of ", max_patches, " patches");
  return {h, w};
}

RgbImage resize_bicubic(const RgbImage& image, std::int64_t width, std::int64_t height) {
  // Two passes, each rounding to 8 bits; a pass whose size is unchanged is skipped. Pillow 13 runs the
  // vertical pass first when the height shrinks by more than twice as many pixels as the width does, else the
  // horizontal one (Pillow 12 and older: always horizontal first).
  const std::int64_t shrink_y = image.height - height, shrink_x = image.width - width;
  if (shrink_y > 0 && shrink_y > shrink_x * 2) {
    const RgbImage tall = resample_vertical(image, height);
    return width != image.width ? resample_horizontal(tall, width) : tall;
  }
  RgbImage out = width != image.width ? resample_horizontal(image, width) : image;
  return height != image.height ? resample_vertical(out, height) : out;
}

ProcessedImage process_image(const RgbImage& image, const ImageProcessorConfig& config,
                             const std::string& name) {
  const RgbImage* pixels = &image;
  RgbImage resized;
  if (config.do_resize) {
    const auto [h, w] = target_image_size(image.height, image.width, config, name);
    if (h != image.height || w != image.width) {
      resized = resize_bicubic(image, w, h);
      pixels = &resized;
    }
  }
  const std::int64_t p = config.patch_size, k = config.pooling_kernel_size;
  check(pixels->height % p == 0 && pixels->width % p == 0, name, ": image of ", pixels->width, "x",
        pixels->height, " pixels is not a whole number of ", p, "-pixel patches (do_resize is off)");
  ProcessedImage out;
  out.height = pixels->height;
  out.width = pixels->width;
  const std::int64_t rows = out.height / p, cols = out.width / p;
  out.patches = rows * cols;
  out.soft_tokens = out.patches / (k * k);
  check(rows % k == 0 && cols % k == 0, name, ": a patch grid of ", cols, "x", rows,
        " is not a whole number of pooling windows of ", k, "x", k);
  const std::int64_t patch_len = 3 * p * p;
  out.pixel_values.resize(static_cast<std::size_t>(out.patches * patch_len));
  float mean[3], std_dev[3];
  for (int c = 0; c < 3; ++c) {
    mean[c] = static_cast<float>(config.image_mean[c]);
    std_dev[c] = static_cast<float>(config.image_std[c]);
  }
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t q = 0; q < cols; ++q) {
      out.xs.push_back(q);
      out.ys.push_back(r);
      float* patch = &out.pixel_values[static_cast<std::size_t>((r * cols + q) * patch_len)];
      for (std::int64_t i = 0; i < p; ++i) {
        for (std::int64_t j = 0; j < p; ++j) {
          const std::uint8_t* src =
              &pixels->pixels[static_cast<std::size_t>(((r * p + i) * out.width + q * p + j) * 3)];
          for (int c = 0; c < 3; ++c) {
            // numpy: float32(float64(u8) * factor), then (x - mean) / std in float32
            float v = config.do_rescale
                          ? static_cast<float>(static_cast<double>(src[c]) * config.rescale_factor)
                          : static_cast<float>(src[c]);
            if (config.do_normalize) v = (v - mean[c]) / std_dev[c];
            patch[(i * p + j) * 3 + c] = v;
          }
        }
      }
    }
  }
  return out;
}

}  // namespace g4
