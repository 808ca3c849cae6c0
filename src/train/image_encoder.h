// image_encoder.h: the soft tokens of a batch's images, what the text model puts in place of their
// placeholders: each image read and preprocessed as transformers' processor does (data/image_processor.h),
// run through the vision tower and embed_vision (model/vision_tower.h) on the weights' device and dtype,
// and the results stacked [Σ soft tokens, text hidden] in the order of the batch's placeholders.
//
// On the CPU so far (the vision tower has not run on a GPU: a clear error there). What trains (train.vision):
// nothing (frozen, the default, as NeMo Automodel's Gemma 4 VLM recipes), the
// projection (embed_vision), or the whole tower and the projection. When something trains, the weights are
// f32 on the host (CPU training), soft_tokens keeps a tape per image, and backward adds the gradient of the
// soft tokens' loss into gradients shaped like the weights (for_each_vision_parameter's names).
#pragma once

#include <string>
#include <vector>

#include "core/allocator.h"
#include "data/image_processor.h"
#include "data/packed_dataset.h"
#include "model/vision_tower.h"
#include "train/adamw.h"

namespace g4 {

class ImageEncoder {
 public:
  // The tower of the checkpoint at `dir` (model.vision_tower.*, model.embed_vision.*) placed on `device`
  // in `dtype`, and the image processor's settings of that directory. `train`: frozen | projection | tower.
  ImageEncoder(const ModelConfig& config, const std::string& dir, Allocator& device, DType dtype,
               const std::string& train = "frozen");

  const ImageProcessorConfig& processor() const { return processor_; }
  bool training() const { return train_ != "frozen"; }
  // [Σ soft_tokens, text hidden]; an image whose size no longer gives its recorded soft-token count (the
  // file changed since the data was read) is an error naming it. With `for_backward` (and a trained vision
  // side), the tapes of this call are kept for backward.
  Tensor soft_tokens(const std::vector<DocumentImage>& images, bool for_backward = false);
  // Adds the gradient of the last soft_tokens call's loss, given d_soft [Σ soft_tokens, text hidden].
  void backward(const Tensor& d_soft);

  // The trainable tensors with their gradients (empty when frozen), by checkpoint name.
  std::vector<ParamRef> parameters();
  std::vector<Tensor*> gradients();
  // The trained tensors, by checkpoint name, for writing over a checkpoint's carried copies.
  std::vector<std::pair<std::string, Tensor>> trained_weights();

 private:
  bool trains(const std::string& name) const;
  VisionConfig vision_;
  std::int64_t text_hidden_ = 0;
  VisionWeights weights_, grads_;
  ImageProcessorConfig processor_;
  Allocator* device_ = nullptr;
  DType dtype_ = DType::f32;
  std::string train_;
  std::vector<VisionTape> tapes_;
  std::vector<std::int64_t> counts_;  // soft tokens of each taped image
};

}  // namespace g4
