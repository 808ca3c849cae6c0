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

ImageEncoder::ImageEncoder(const ModelConfig& config, const std::string& dir, Allocator& device, DType dtype,
                           const std::string& train)
    : text_hidden_(config.text.hidden_size), device_(&device), dtype_(dtype), train_(train) {
  check(config.vision.has_value(), "the model at ", dir, " has no vision_config: it takes no images");
  vision_ = *config.vision;
  processor_ = load_image_processor_config(dir, vision_.patch_size, vision_.pooling_kernel_size);
  check(processor_.patch_size == vision_.patch_size &&
            processor_.pooling_kernel_size == vision_.pooling_kernel_size,
        "the image processor's patch_size ", processor_.patch_size, " and pooling_kernel_size ",
        processor_.pooling_kernel_size, " differ from vision_config's ", vision_.patch_size, " and ",
        vision_.pooling_kernel_size, " (", dir, ")");
  check(device.device() == Device::cpu,
        "images run on the CPU so far: the vision tower has not run on a GPU "
        "yet (use --device cpu / train.device cpu for image-text data)");
  check(!training() || dtype == DType::f32, "train.vision ", train,
        " trains in f32 so far (train.dtype f32)");
  weights_ = load_vision_weights(config, Checkpoint::open(dir));
  for_each_vision_parameter(weights_, [&](const std::string&, Tensor& t) { t = placed(t, device, dtype); });
  weights_.std_shift = placed(weights_.std_shift, device, dtype);
  weights_.std_scale = placed(weights_.std_scale, device, dtype);
  if (training()) grads_ = vision_zeros_like(weights_);
}

bool ImageEncoder::trains(const std::string& name) const {
  return train_ == "tower" || (train_ == "projection" && name.rfind("model.embed_vision.", 0) == 0);
}

Tensor ImageEncoder::soft_tokens(const std::vector<DocumentImage>& images, bool for_backward) {
  std::int64_t total = 0;
  for (const DocumentImage& image : images) total += image.soft_tokens;
  Tensor out = ops::zeros({total, text_hidden_}, device_->device(), dtype_);
  tapes_.clear();
  counts_.clear();
  std::int64_t at = 0;
  for (const DocumentImage& image : images) {
    const ProcessedImage p = process_image(read_image_file(image.path), processor_, image.path);
    check(p.soft_tokens == image.soft_tokens, image.path, " now gives ", p.soft_tokens,
          " soft tokens, not the ", image.soft_tokens,
          " it gave when the data was read (did the file change?)");
    Tensor pixels(DType::f32, {p.patches, 3 * processor_.patch_size * processor_.patch_size});
    std::copy(p.pixel_values.begin(), p.pixel_values.end(), pixels.f32());
    VisionTape* tape = nullptr;
    if (training() && for_backward) tape = &tapes_.emplace_back();
    const VisionOutput v =
        vision_forward(vision_, weights_, placed(pixels, *device_, dtype_), p.xs, p.ys, tape);
    Tensor rows = out.rows(at, p.soft_tokens);
    ops::assign_(rows, v.soft_tokens);
    if (tape) counts_.push_back(p.soft_tokens);
    at += p.soft_tokens;
  }
  return out;
}

void ImageEncoder::backward(const Tensor& d_soft) {
  if (!training()) return;
  check(tapes_.size() == counts_.size(), "internal: image tapes and counts differ");
  std::int64_t at = 0;
  for (std::size_t i = 0; i < tapes_.size(); ++i) {
    vision_backward(vision_, weights_, tapes_[i], d_soft.rows(at, counts_[i]).clone(), grads_);
    at += counts_[i];
  }
  tapes_.clear();
  counts_.clear();
}

std::vector<ParamRef> ImageEncoder::parameters() {
  std::vector<ParamRef> out;
  if (!training()) return out;
  std::vector<std::pair<std::string, Tensor*>> grads;
  for_each_vision_parameter(grads_,
                            [&](const std::string& name, Tensor& g) { grads.emplace_back(name, &g); });
  std::size_t i = 0;
  for_each_vision_parameter(weights_, [&](const std::string& name, Tensor& w) {
    const Tensor* g = grads[i++].second;
    if (trains(name)) out.push_back({name, &w, g});
  });
  return out;
}

std::vector<Tensor*> ImageEncoder::gradients() {
  std::vector<Tensor*> out;
  if (!training()) return out;
  for_each_vision_parameter(grads_, [&](const std::string& name, Tensor& g) {
    if (trains(name)) out.push_back(&g);
  });
  return out;
}

std::vector<std::pair<std::string, Tensor>> ImageEncoder::trained_weights() {
  std::vector<std::pair<std::string, Tensor>> out;
  for (ParamRef& p : parameters()) out.emplace_back(p.name, *p.param);
  return out;
}

}  // namespace g4
