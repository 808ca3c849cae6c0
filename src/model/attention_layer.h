// attention_layer.h: one Gemma 4 self-attention layer (hf_transformers_gemma4.md §3.4, §3.6):
// q = RoPE(q_norm(q_proj(a))); k = RoPE(k_norm(k_proj(a))); v = v_norm(v_proj(a)) or, on k_eq_v full
// layers, v_norm(raw k_proj(a)); scores with scaling 1.0; o_proj. KV-shared layers read the K/V stored by
// their source layer in the context instead of computing their own.
#pragma once

#include "core/tensor.h"
#include "model/forward_context.h"
#include "model/gemma4_weights.h"

namespace g4 {

// a [T, H] -> out [T, H]
Tensor attention_layer_forward(const LayerSpec& spec, const AttentionWeights& w, const Tensor& a,
                               ForwardContext& ctx, float eps);

}  // namespace g4
