// parameter_refs.h: the optimizer's view of a model: every trainable tensor paired with its gradient, by
// name. Invariant: weights and grads have the same structure (grads made by zeros_like), so
// for_each_parameter visits them in the same order.
#pragma once

#include <vector>

#include "model/gemma4_weights.h"
#include "train/adamw.h"

namespace g4 {

std::vector<ParamRef> parameter_refs(const ModelConfig& config, Gemma4Weights& weights, Gemma4Weights& grads);

// The gradient tensors of `grads`, writable (for zeroing and clipping).
std::vector<Tensor*> gradient_tensors(const ModelConfig& config, Gemma4Weights& grads);

}  // namespace g4
