#include "model/gemma4_weights.h"

#include "core/error.h"
#include "model/weight_layout.h"

namespace g4 {

Gemma4Weights load_gemma4_weights(const ModelConfig& config, const Checkpoint& ckpt) {
  const TextConfig& c = config.text;
  // Check every expected tensor first, so that a bad checkpoint fails before any large read.
  for (const ExpectedTensor& t : expected_text_tensors(c)) {
    const std::string name = t.name == "lm_head.weight" ? t.name : config.text_prefix + t.name;
    const TensorInfo& info = ckpt.info(name);
    check(info.shape == t.shape, "tensor ", name, " has shape ", shape_str(info.shape),
          " but the config implies ", shape_str(t.shape), " (", ckpt.file_of(name), ")");
  }
  auto load = [&](const std::string& relative) { return ckpt.read_f32(config.text_prefix + relative); };
  Gemma4Weights w;
  w.embed_tokens = load("embed_tokens.weight");
  if (!c.tie_word_embeddings) w.lm_head = ckpt.read_f32("lm_head.weight");
  w.final_norm = load("norm.weight");
  if (c.hidden_size_per_layer_input > 0) {
    w.embed_tokens_per_layer = load("embed_tokens_per_layer.weight");
    w.per_layer_model_projection = load("per_layer_model_projection.weight");
    w.per_layer_projection_norm = load("per_layer_projection_norm.weight");
  }
  for (const LayerSpec& s : c.layers) {
    const std::string p = "layers." + std::to_string(s.index) + ".";
    LayerWeights l;
    l.input_norm = load(p + "input_layernorm.weight");
    l.post_attention_norm = load(p + "post_attention_layernorm.weight");
    l.pre_feedforward_norm = load(p + "pre_feedforward_layernorm.weight");
    l.post_feedforward_norm = load(p + "post_feedforward_layernorm.weight");
    l.attention.q_proj = load(p + "self_attn.q_proj.weight");
    l.attention.q_norm = load(p + "self_attn.q_norm.weight");
    l.attention.o_proj = load(p + "self_attn.o_proj.weight");
    if (s.kv_source < 0) {
      l.attention.k_proj = load(p + "self_attn.k_proj.weight");
      l.attention.k_norm = load(p + "self_attn.k_norm.weight");
      if (!s.k_eq_v) l.attention.v_proj = load(p + "self_attn.v_proj.weight");
    }
    l.mlp_gate = load(p + "mlp.gate_proj.weight");
    l.mlp_up = load(p + "mlp.up_proj.weight");
    l.mlp_down = load(p + "mlp.down_proj.weight");
    if (s.moe) {
      l.moe.router_proj = load(p + "router.proj.weight");
      l.moe.router_scale = load(p + "router.scale");
      l.moe.per_expert_scale = load(p + "router.per_expert_scale");
      l.moe.gate_up_proj = load(p + "experts.gate_up_proj");
      l.moe.down_proj = load(p + "experts.down_proj");
      l.moe.pre_norm_2 = load(p + "pre_feedforward_layernorm_2.weight");
      l.moe.post_norm_1 = load(p + "post_feedforward_layernorm_1.weight");
      l.moe.post_norm_2 = load(p + "post_feedforward_layernorm_2.weight");
    }
    if (s.ple_width > 0) {
      l.ple_gate = load(p + "per_layer_input_gate.weight");
      l.ple_projection = load(p + "per_layer_projection.weight");
      l.ple_post_norm = load(p + "post_per_layer_input_norm.weight");
    }
    l.layer_scalar = load(p + "layer_scalar").f32()[0];
    w.layers.push_back(std::move(l));
  }
  return w;
}

}  // namespace g4
