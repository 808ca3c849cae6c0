#include "train/image_encoder.h"

#include "core/error.h"
#include "io/checkpoint.h"
#include "ops/ops.h"
#include "train/vision_loading.h"

namespace g4 {

namespace {

Tensor placed(const Tensor& t, Allocator& device, DType dtype) {
  if (t.numel() == 0) return t;
  return (t.dtype() == dtype ? t : t.to_dtype(dtype)).to(device);
}

}  // namespace

ImageEncoder::ImageEncoder(const ModelConfig& config, const std::string& dir, Allocator& device, DType dtype)
    : text_hidden_(config.text.hidden_size), device_(&device), dtype_(dtype) {
  check(config.vision.has_value(), "the model at ", dir, " has no vision_config: it takes no images");
  vision_ = *config.vision;
  processor_ = load_image_processor_config(dir, vision_.patch_size, vision_.pooling_kernel_size);
  check(processor_.patch_size == vision_.patch_size &&
            processor_.pooling_kernel_size == vision_.pooling_kernel_size,
        "the image processor's patch_size ", processor_.patch_size, " and pooling_kernel_size ",
        processor_.pooling_kernel_size, " differ from vision_config's ", vision_.patch_size, " and ",
        vision_.pooling_kernel_size, " (", dir, ")");
  weights_ = load_vision_weights(config, Checkpoint::open(dir));
  for_each_vision_parameter(weights_, [&](const std::string&, Tensor& t) { t = placed(t, device, dtype); });
  weights_.std_shift = placed(weights_.std_shift, device, dtype);
  weights_.std_scale = placed(weights_.std_scale, device, dtype);
}

Tensor ImageEncoder::soft_tokens(const std::vector<DocumentImage>& images) const {
  std::int64_t total = 0;
  for (const DocumentImage& image : images) total += image.soft_tokens;
  Tensor out = ops::zeros({total, text_hidden_}, device_->device(), dtype_);
  std::int64_t at = 0;
  for (const DocumentImage& image : images) {
    const ProcessedImage p = process_image(read_image_file(image.path), processor_, image.path);
    check(p.soft_tokens == image.soft_tokens, image.path, " now gives ", p.soft_tokens,
          " soft tokens, not the ", image.soft_tokens,
          " it gave when the data was read (did the file change?)");
    Tensor pixels(DType::f32, {p.patches, 3 * processor_.patch_size * processor_.patch_size});
    std::copy(p.pixel_values.begin(), p.pixel_values.end(), pixels.f32());
    const VisionOutput v = vision_forward(vision_, weights_, placed(pixels, *device_, dtype_), p.xs, p.ys);
    Tensor rows = out.rows(at, p.soft_tokens);
    ops::assign_(rows, v.soft_tokens);
    at += p.soft_tokens;
  }
  return out;
}

}  // namespace g4
