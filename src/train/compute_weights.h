// compute_weights.h: mixed precision's two copies of the weights. The optimizer updates f32 master weights
// (what AdamW steps, clips and checkpoints save); the forward and backward run on a copy in the compute dtype
// (bf16 on the GPU), refreshed from the masters after every optimizer step. Gradients are f32 and belong to
// the masters' shapes (ops/ops.h: parameter gradients are f32 whatever the activations' dtype).
//
// Invariants: the compute model shares the master's config and dispatcher; its tensors live on the masters'
// device; tensors that stay f32 in every model (the MoE routers' projection and scale, gemma4_weights.h) are
// the masters' own tensors, not copies; in an f32 model the compute model is the master model itself.
#pragma once

#include <utility>
#include <vector>

#include "model/gemma4_model.h"

namespace g4 {

class ComputeWeights {
 public:
  // `master` (f32 weights on any device) must outlive this object and keep its tensors.
  ComputeWeights(const Gemma4Model& master, DType dtype);
  const Gemma4Model& model() const { return copies_.empty() ? *master_ : compute_; }
  DType dtype() const { return dtype_; }
  // Rounds the master weights into the compute weights (after every optimizer step).
  void refresh();

 private:
  const Gemma4Model* master_;
  DType dtype_;
  Gemma4Model compute_;
  std::vector<std::pair<Tensor*, const Tensor*>> copies_;  // compute tensor, its master
};

}  // namespace g4
