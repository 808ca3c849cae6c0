// model_loading.h: a Gemma 4 model read from a checkpoint directory (Hugging Face or native MoE layout,
// `model.` or `model.language_model.` names, one file or shards), into model/gemma4_weights.h's structures.
//
// Invariants of what it returns: every tensor has the shape the config implies (checked against
// expected_text_tensors before any large read); bf16/f16/f64 weights are widened to fp32; an HF checkpoint's
// MoE tensors pass through the state-dict adapter (moe/state_dict_adapter.h), here and nowhere else on the
// way in (train/checkpoint_layout.h is the way out).
#pragma once

#include <string>

#include "io/checkpoint.h"
#include "model/gemma4_model.h"
#include "moe/state_dict_adapter.h"

namespace g4 {

// `native_moe` (out, optional): whether the checkpoint stored its MoE weights in the native layout.
// `experts` (count > 0): load only those experts of every MoE layer (expert parallelism); the checkpoint
// itself must hold all of them. Only their rows of the fused expert tensors (and of per_expert_scale) are
// copied out of the mapped files: a rank never holds another rank's experts, not even transiently.
Gemma4Weights load_gemma4_weights(const ModelConfig& config, const Checkpoint& checkpoint,
                                  bool* native_moe = nullptr, ExpertRange experts = {});

// Whether a checkpoint tensor belongs to the text model (lm_head.weight, or under config.text_prefix).
bool is_text_model_tensor(const ModelConfig& config, const std::string& name);

// Reads config.json and the weights of a checkpoint directory (either layout); with a non-empty `experts`
// range only those experts of every MoE layer are kept. Every other tensor of the checkpoint (the towers)
// is kept as stored in Gemma4Model::carried.
Gemma4Model load_gemma4_model(const std::string& dir, ExpertRange experts = {});

}  // namespace g4
