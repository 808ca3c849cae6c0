// decoder_layer.h: one Gemma 4 decoder layer (hf_transformers_gemma4.md §3.3), forward and backward:
//   x  = x + post_attention_norm(attention(input_norm(x)))
//   r  = x;  m = dense_mlp(pre_feedforward_norm(r))
//   MoE: m = post_norm_1(m) + post_norm_2(experts(pre_norm_2(r); router(r)))
//   x  = r + post_feedforward_norm(m)
//   PLE: x = x + post_per_layer_input_norm(per_layer_projection(gelu(per_layer_input_gate(x)) · ple_l))
//   x  = x · layer_scalar
// Backward: parameter gradients accumulate (+=); it returns d(layer input) and adds into dple.
#pragma once

#include "core/tensor.h"
#include "model/attention_layer.h"
#include "model/dense_mlp.h"
#include "model/forward_context.h"
#include "model/gemma4_weights.h"
#include "moe/gemma4_moe.h"

namespace g4 {

struct LayerTape {
  Tensor x_in, attn_out, x_mid;
  AttentionTape attention;
  DenseMlpTape mlp;
  Tensor dense_out;
  mutable Gemma4MoeContext<float> moe;  // routing and expert activations (its buffers are reused by backward)
  Tensor xe, experts_out;
  Tensor m_sum, x_post;
  Tensor ple_gate_pre, ple_mixed, ple_proj;
};

// x [T, H] is replaced by the layer's output; ple [T, L, P] (empty without PLE).
void decoder_layer_forward(const TextConfig& c, const LayerSpec& s, const LayerWeights& w, Tensor& x,
                           const Tensor& ple, ForwardContext& ctx, LayerTape* tape = nullptr);

Tensor decoder_layer_backward(const TextConfig& c, const LayerSpec& s, const LayerWeights& w,
                              const LayerTape& tape, const Tensor& dx_out, const Tensor& ple, Tensor& dple,
                              ForwardContext& ctx, LayerWeights& grads);

}  // namespace g4
