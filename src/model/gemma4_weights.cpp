#include "model/gemma4_weights.h"

namespace g4 {

void for_each_parameter(const ModelConfig& config, Gemma4Weights& w,
                        const std::function<void(const std::string&, Tensor&)>& fn) {
  const TextConfig& c = config.text;
  const std::string& pre = config.text_prefix;
  fn(pre + "embed_tokens.weight", w.embed_tokens);
  if (c.hidden_size_per_layer_input > 0) {
    fn(pre + "embed_tokens_per_layer.weight", w.embed_tokens_per_layer);
    fn(pre + "per_layer_model_projection.weight", w.per_layer_model_projection);
    fn(pre + "per_layer_projection_norm.weight", w.per_layer_projection_norm);
  }
  for (const LayerSpec& s : c.layers) {
    const std::string p = pre + "layers." + std::to_string(s.index) + ".";
    LayerWeights& l = w.layers[s.index];
    fn(p + "input_layernorm.weight", l.input_norm);
    fn(p + "self_attn.q_proj.weight", l.attention.q_proj);
    fn(p + "self_attn.q_norm.weight", l.attention.q_norm);
    if (s.kv_source < 0) {
      fn(p + "self_attn.k_proj.weight", l.attention.k_proj);
      if (!s.k_eq_v) fn(p + "self_attn.v_proj.weight", l.attention.v_proj);
      fn(p + "self_attn.k_norm.weight", l.attention.k_norm);
    }
    fn(p + "self_attn.o_proj.weight", l.attention.o_proj);
    fn(p + "post_attention_layernorm.weight", l.post_attention_norm);
    fn(p + "pre_feedforward_layernorm.weight", l.pre_feedforward_norm);
    fn(p + "mlp.gate_proj.weight", l.mlp_gate);
    fn(p + "mlp.up_proj.weight", l.mlp_up);
    fn(p + "mlp.down_proj.weight", l.mlp_down);
    fn(p + "post_feedforward_layernorm.weight", l.post_feedforward_norm);
    if (s.moe) {
      fn(p + "post_feedforward_layernorm_1.weight", l.moe.post_norm_1);
      fn(p + "moe.gate.proj.weight", l.moe.router_proj);
      fn(p + "moe.gate.scale", l.moe.router_scale);
      fn(p + "pre_feedforward_layernorm_2.weight", l.moe.pre_norm_2);
      fn(p + "moe.experts.gate_and_up_projs", l.moe.gate_and_up);
      fn(p + "moe.experts.down_projs", l.moe.down);
      fn(p + "post_feedforward_layernorm_2.weight", l.moe.post_norm_2);
    }
    if (s.ple_width > 0) {
      fn(p + "per_layer_input_gate.weight", l.ple_gate);
      fn(p + "per_layer_projection.weight", l.ple_projection);
      fn(p + "post_per_layer_input_norm.weight", l.ple_post_norm);
    }
  }
  fn(pre + "norm.weight", w.final_norm);
  if (!c.tie_word_embeddings) fn("lm_head.weight", w.lm_head);
}

bool always_f32(const Gemma4Weights& weights, const Tensor* t) {
  for (const LayerWeights& l : weights.layers)
    if (t == &l.moe.router_proj || t == &l.moe.router_scale) return true;
  return false;
}

void move_weights(const ModelConfig& config, Gemma4Weights& weights, Allocator& allocator, DType dtype) {
  for_each_parameter(config, weights, [&](const std::string&, Tensor& t) {
    const DType want = always_f32(weights, &t) ? DType::f32 : dtype;
    Tensor x = t;
    if (x.dtype() != want) {  // converted on the host
      if (x.device() != Device::cpu) x = x.to(host_allocator());
      x = want == DType::f32 ? x.to_f32() : x.to_dtype(want);
    }
    t = x.to(allocator);
  });
}

Gemma4Weights zeros_like(const ModelConfig& config, const Gemma4Weights& weights) {
  Gemma4Weights z;
  z.layers.resize(weights.layers.size());
  Gemma4Weights& src = const_cast<Gemma4Weights&>(weights);  // visited read-only
  std::vector<Tensor*> targets;
  for_each_parameter(config, z, [&](const std::string&, Tensor& t) { targets.push_back(&t); });
  std::size_t i = 0;
  for_each_parameter(config, src,
                     [&](const std::string&, Tensor& t) { *targets[i++] = Tensor(DType::f32, t.shape()); });
  for (std::size_t l = 0; l < z.layers.size(); ++l) z.layers[l].layer_scalar = weights.layers[l].layer_scalar;
  return z;
}

}  // namespace g4
