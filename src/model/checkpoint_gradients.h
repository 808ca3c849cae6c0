// checkpoint_gradients.h: gradients named and shaped as the checkpoint they were computed from.
//
// The model computes MoE gradients in the native layout (per_expert_scale folded into down_projs). For a
// checkpoint in the Hugging Face layout they are mapped back by the adapter's chain rule
// (dL/d down_proj = s_e · Gᵀ, dL/d per_expert_scale_e = Σ G · down_proj_hf), reading the HF down_proj and
// per_expert_scale from the checkpoint itself; for a native checkpoint they are returned as they are.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "io/checkpoint.h"
#include "model/gemma4_model.h"

namespace g4 {

std::vector<std::pair<std::string, Tensor>> gradients_in_checkpoint_layout(const ModelConfig& config,
                                                                           Gemma4Weights& grads,
                                                                           const Checkpoint& checkpoint);

}  // namespace g4
