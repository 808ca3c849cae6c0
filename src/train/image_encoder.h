// image_encoder.h: the soft tokens of a batch's images, what the text model puts in place of their
// placeholders: each image read and preprocessed as transformers' processor does (data/image_processor.h),
// run through the vision tower and embed_vision (model/vision_tower.h) on the weights' device and dtype,
// and the results stacked [Σ soft tokens, text hidden] in the order of the batch's placeholders.
//
// The towers are frozen here (a forward without a tape): fine-tuning trains the language model, as NeMo
// Automodel's Gemma 4 VLM recipes do by default.
#pragma once

#include <string>
#include <vector>

#include "core/allocator.h"
#include "data/image_processor.h"
#include "data/packed_dataset.h"
#include "model/vision_tower.h"

namespace g4 {

class ImageEncoder {
 public:
  // The tower of the checkpoint at `dir` (model.vision_tower.*, model.embed_vision.*) placed on `device`
  // in `dtype`, and the image processor's settings of that directory.
  ImageEncoder(const ModelConfig& config, const std::string& dir, Allocator& device, DType dtype);

  const ImageProcessorConfig& processor() const { return processor_; }
  // [Σ soft_tokens, text hidden]; an image whose size no longer gives its recorded soft-token count (the
  // file changed since the data was read) is an error naming it.
  Tensor soft_tokens(const std::vector<DocumentImage>& images) const;

 private:
  VisionConfig vision_;
  std::int64_t text_hidden_ = 0;
  VisionWeights weights_;
  ImageProcessorConfig processor_;
  Allocator* device_ = nullptr;
  DType dtype_ = DType::f32;
};

}  // namespace g4
