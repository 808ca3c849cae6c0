// image_processor.h: Gemma 4's image preprocessing, as transformers 5.17's Gemma4ImageProcessorPil does it:
//   1. resize, keeping the aspect ratio, to the largest size whose sides are multiples of pooling·patch and
//      whose patch count fits max_soft_tokens·pooling² (get_aspect_ratio_preserving_size), with Pillow 13's
//      bicubic filter on the 8-bit image (its fixed-point arithmetic and pass order, so the bytes are
//      Pillow's);
//   2. rescale to [0, 1] (float32(u8 · rescale_factor), the factor in double as numpy has it) and, when the
//      config asks, normalise per channel;
//   3. cut into patch_size² patches in row-major patch order, each patch's values ordered (row, column,
//      channel); each patch's position is (column, row) of the patch grid.
// The image then stands for patches / pooling² soft tokens.
//
// transformers' other backend (Gemma4ImageProcessor, torchvision) resizes in float and rounds, and differs
// from Pillow's bytes by one or two levels on a few per cent of the values; g4moe follows Pillow's
// (docs/design.md, "Images").
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/image_decode.h"
#include "io/json.h"

namespace g4 {

struct ImageProcessorConfig {
  std::int64_t patch_size = 16;
  std::int64_t max_soft_tokens = 280;  // one of 70, 140, 280, 560, 1120
  std::int64_t pooling_kernel_size = 3;
  bool do_resize = true, do_rescale = true, do_normalize = false;
  double rescale_factor = 1.0 / 255.0;
  std::array<double, 3> image_mean{0.0, 0.0, 0.0}, image_std{1.0, 1.0, 1.0};
};

// Reads the image processor's settings: processor_config.json's "image_processor" object, or a whole
// preprocessor_config.json. Keys it does not know are ignored; known keys are checked (`where` names the
// file). Only the bicubic filter (resample 3) is supported, as Gemma 4 ships it.
ImageProcessorConfig parse_image_processor_config(const Json& doc, const std::string& where);
// The checkpoint directory's settings (processor_config.json, else preprocessor_config.json, else the
// defaults with the vision tower's patch and pooling sizes, as given).
ImageProcessorConfig load_image_processor_config(const std::string& model_dir, std::int64_t patch_size,
                                                 std::int64_t pooling_kernel_size);

struct ProcessedImage {
  std::int64_t height = 0, width = 0;  // after the resize
  std::int64_t patches = 0, soft_tokens = 0;
  std::vector<float> pixel_values;   // [patches, 3·patch_size²]
  std::vector<std::int64_t> xs, ys;  // each patch's column and row in the patch grid
};

// The resized (height, width) for an image of `height`×`width`; errors name `name`.
std::array<std::int64_t, 2> target_image_size(std::int64_t height, std::int64_t width,
                                              const ImageProcessorConfig& config, const std::string& name);
// Pillow's Image.resize((width, height), BICUBIC) of an 8-bit RGB image.
RgbImage resize_bicubic(const RgbImage& image, std::int64_t width, std::int64_t height);
ProcessedImage process_image(const RgbImage& image, const ImageProcessorConfig& config,
                             const std::string& name);

}  // namespace g4
