// vision_loading.h: the vision tower and its projection (model/vision_tower.h) read from a checkpoint
// directory in the released layout (model.vision_tower.*, model.embed_vision.*), in fp32.
//
// Invariants: every tensor has the shape vision_config implies, checked before it is read (a one-line error
// naming the tensor otherwise); a config without vision_config is a one-line error. With use_clipped_linears
// the clipping bounds (scalars) are read too; NaN or reversed bounds are an error.
#pragma once

#include <functional>
#include <string>

#include "io/checkpoint.h"
#include "model/vision_tower.h"

namespace g4 {

VisionWeights load_vision_weights(const ModelConfig& config, const Checkpoint& checkpoint);

// Every trainable tensor of `weights` (or of its gradients) with its checkpoint name, in checkpoint order
// (the standardisation buffers are not trainable and not visited).
void for_each_vision_parameter(VisionWeights& weights,
                               const std::function<void(const std::string& name, Tensor& tensor)>& visit);

}  // namespace g4
