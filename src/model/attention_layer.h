// attention_layer.h: one Gemma 4 self-attention layer (hf_transformers_gemma4.md §3.4, §3.6):
// q = RoPE(q_norm(q_proj(a))); k = RoPE(k_norm(k_proj(a))); v = v_norm(v_proj(a)) or, on k_eq_v full
// layers, v_norm(raw k_proj(a)); scores with scaling 1.0; o_proj. KV-shared layers read the K/V stored by
// their source layer in the context instead of computing their own. With a KV cache in the context
// (generation), the new K/V go through it and the queries also see the cached positions; no tape then.
//
// Backward: parameter gradients accumulate (+=). A KV-shared layer adds its dK/dV into the context's
// accumulators for its source; the source layer (visited later, backward runs from the last layer) adds them
// to its own before going through its norms and projections.
#pragma once

#include "core/tensor.h"
#include "model/forward_context.h"
#include "model/gemma4_weights.h"

namespace g4 {

struct AttentionTape {
  Tensor a;                    // input [T, H]
  Tensor q_raw, k_raw, v_raw;  // projections before norms/RoPE ([T, N, D]); k/v empty on shared layers
  Tensor q, k, v;              // what the attention product used
  Tensor o;                    // attention output before o_proj [T, Nq·D]
};

// a [T, H] -> out [T, H]
Tensor attention_layer_forward(const LayerSpec& spec, const AttentionWeights& w, const Tensor& a,
                               ForwardContext& ctx, float eps, AttentionTape* tape = nullptr);

// Returns da; adds into `grads`.
Tensor attention_layer_backward(const LayerSpec& spec, const AttentionWeights& w, const AttentionTape& tape,
                                const Tensor& dout, ForwardContext& ctx, float eps, AttentionWeights& grads);

}  // namespace g4
