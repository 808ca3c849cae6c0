// checkpoint_layout.h: the model's weights and gradients named and shaped as a checkpoint holds them; the one
// place where the native MoE tensors go through the state-dict adapter on the way out (loading goes the other
// way in gemma4_weights.cpp).
//
// Weights: the Hugging Face layout (experts transposed back, per_expert_scale written as ones, layer_scalar
// added), so transformers loads them. Gradients: the model computes MoE gradients in the native layout
// (per_expert_scale folded into down_projs); for a checkpoint in the HF layout they are mapped back by the
// adapter's chain rule (dL/d down_proj = s_e · Gᵀ, dL/d per_expert_scale_e = Σ G · down_proj_hf), reading the
// HF down_proj and per_expert_scale from the checkpoint itself; for a native checkpoint they are returned as
// they are.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "io/checkpoint.h"
#include "model/gemma4_model.h"

namespace g4 {

// Every weight (fp32, shared with the model, not copied unless converted) in the HF layout and names, in a
// stable order.
std::vector<std::pair<std::string, Tensor>> weights_in_hf_layout(const Gemma4Model& model);

std::vector<std::pair<std::string, Tensor>> gradients_in_checkpoint_layout(const ModelConfig& config,
                                                                           Gemma4Weights& grads,
                                                                           const Checkpoint& checkpoint);

}  // namespace g4
