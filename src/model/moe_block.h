// moe_block.h: the routed-experts branch of a Gemma 4 MoE layer, in the Hugging Face parametrisation
// (hf_transformers_gemma4.md §3.5):
//   router(r): z = rms_norm_noscale(r) · scale · H^-0.5; p = softmax(z · projᵀ) over all E experts;
//              top-k of p, renormalised to sum 1, times per_expert_scale[idx];
//   experts(xe): for each (token, slot): gelu_tanh(gate) · up from gate_up_proj[e], then down_proj[e],
//              weighted by the slot's routing weight and summed over the k slots.
// The router reads the raw residual r; the experts read xe = pre_feedforward_layernorm_2(r).
// Backward: parameter gradients accumulate (+=); no gradient flows through the expert indices.
#pragma once

#include <vector>

#include "core/tensor.h"
#include "model/gemma4_weights.h"

namespace g4 {

struct Routing {
  int top_k = 0;
  std::vector<int> indices;      // [T, k], descending probability
  std::vector<float> weights;    // [T, k], renormalised, times per_expert_scale
  std::vector<float> renormed;   // [T, k], renormalised probabilities (before per_expert_scale)
  std::vector<float> kept_mass;  // [T], sum of the k selected probabilities
  Tensor probs;                  // [T, E], softmax over all experts
  Tensor scaled_input;           // [T, H], rms_norm_noscale(r) · scale · H^-0.5 (the projection's input)
};

Routing router_forward(const MoeWeights& w, const Tensor& residual, int top_k, float eps);

// dweights [T, k]: d loss / d routing weight. Returns d residual; adds into router grads of `g`.
Tensor router_backward(const MoeWeights& w, const Tensor& residual, const Routing& routing,
                       const std::vector<float>& dweights, float eps, MoeWeights& g);

// xe [T, H] -> [T, H]
Tensor experts_forward(const MoeWeights& w, const Tensor& xe, const Routing& routing);

// Returns dxe; fills dweights [T, k]; adds into gate_up_proj / down_proj grads of `g`.
Tensor experts_backward(const MoeWeights& w, const Tensor& xe, const Routing& routing, const Tensor& dout,
                        std::vector<float>& dweights, MoeWeights& g);

}  // namespace g4
