// gemma4_weights.h: the parameters of a Gemma 4 text model in memory (fp32), named as a checkpoint names
// them.
//
// Invariants (train/model_loading.h loads them, train/presets.h initialises them): every tensor is fp32 with
// the shape the config implies (model/weight_layout.h); optional parts are empty Tensors when the config has
// none (v_proj on k_eq_v full layers, k/v on KV-shared layers, PLE, MoE). A tied head reads embed_tokens. MoE
// weights are held in the native (NeMo) layout, whatever the checkpoint's.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/gemma4_config.h"
#include "core/tensor.h"

namespace g4 {

struct AttentionWeights {
  Tensor q_proj, k_proj, v_proj, o_proj;  // [out, in]
  Tensor q_norm, k_norm;                  // [head_dim]
};

// The routed experts in g4moe's native (NeMo) layout, whatever layout the checkpoint has.
struct MoeWeights {
  Tensor router_proj;                           // [E, H]
  Tensor router_scale;                          // [H]
  Tensor gate_and_up;                           // [E, H, 2I]: columns 0..I-1 gate, I..2I-1 up
  Tensor down;                                  // [E, I, H], per_expert_scale folded in
  Tensor pre_norm_2, post_norm_1, post_norm_2;  // [H]
};

struct LayerWeights {
  Tensor input_norm, post_attention_norm, pre_feedforward_norm, post_feedforward_norm;
  AttentionWeights attention;
  Tensor mlp_gate, mlp_up, mlp_down;
  MoeWeights moe;  // empty tensors when the layer has no MoE block
  Tensor ple_gate, ple_projection, ple_post_norm;
  float layer_scalar = 1.0f;
};

struct Gemma4Weights {
  Tensor embed_tokens;  // [V, H]; also the head when tied
  Tensor lm_head;       // [V, H] when untied, else empty
  Tensor embed_tokens_per_layer, per_layer_model_projection, per_layer_projection_norm;
  Tensor final_norm;
  std::vector<LayerWeights> layers;

  const Tensor& head() const { return lm_head.empty() ? embed_tokens : lm_head; }
};

// Calls fn(checkpoint name, tensor) for every trainable tensor of `weights` that the config has, in
// checkpoint naming (the config's text prefix; "lm_head.weight" when untied). layer_scalar is a buffer and is
// not visited.
void for_each_parameter(const ModelConfig& config, Gemma4Weights& weights,
                        const std::function<void(const std::string&, Tensor&)>& fn);

// Whether `t` is one of the tensors that stay f32 in every model whatever the compute dtype: the MoE routers'
// projection and scale (the router computes in fp32 on every backend, ops/moe_block_kernel.h).
bool always_f32(const Gemma4Weights& weights, const Tensor* t);

// Every tensor of `weights` the config has moved onto `allocator`'s device (a copy; host to GPU and back) in
// `dtype` (f32 or bf16), except the always_f32 tensors. Conversions run on the host and round to nearest
// even.
void move_weights(const ModelConfig& config, Gemma4Weights& weights, Allocator& allocator,
                  DType dtype = DType::f32);

// Zero tensors with the shapes of `weights` (for gradients).
Gemma4Weights zeros_like(const ModelConfig& config, const Gemma4Weights& weights);

}  // namespace g4
