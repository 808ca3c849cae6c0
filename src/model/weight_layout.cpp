#include "model/weight_layout.h"

#include "core/checked_math.h"
#include "core/regex.h"

namespace g4 {

std::string_view weight_group_name(WeightGroup group) {
  switch (group) {
    case WeightGroup::embedding:
      return "embedding";
    case WeightGroup::attention:
      return "attention";
    case WeightGroup::dense_mlp:
      return "dense_mlp";
    case WeightGroup::router:
      return "router";
    case WeightGroup::experts:
      return "experts";
    case WeightGroup::norm:
      return "norm";
    case WeightGroup::per_layer_input:
      return "per_layer_input";
    case WeightGroup::layer_scalar:
      return "layer_scalar";
    case WeightGroup::head:
      return "head";
  }
  return "?";
}

std::vector<ExpectedTensor> expected_text_tensors(const TextConfig& c, bool native_moe) {
  std::vector<ExpectedTensor> out;
  const std::int64_t H = c.hidden_size;
  const int L = c.num_hidden_layers;
  const int P = c.hidden_size_per_layer_input;
  auto add = [&](std::string name, Shape shape, WeightGroup group, int layer = -1, bool trainable = true) {
    out.push_back({std::move(name), std::move(shape), group, layer, trainable});
  };
  add("embed_tokens.weight", {c.vocab_size, H}, WeightGroup::embedding);
  if (P > 0) {
    add("embed_tokens_per_layer.weight", {c.vocab_size_per_layer_input, static_cast<std::int64_t>(L) * P},
        WeightGroup::per_layer_input);
    add("per_layer_model_projection.weight", {static_cast<std::int64_t>(L) * P, H},
        WeightGroup::per_layer_input);
    add("per_layer_projection_norm.weight", {P}, WeightGroup::norm);
  }
  for (const LayerSpec& s : c.layers) {
    const std::string p = "layers." + std::to_string(s.index) + ".";
    const int l = s.index;
    const std::int64_t D = s.head_dim, q = s.num_q_heads * D, kv = s.num_kv_heads * D;
    add(p + "input_layernorm.weight", {H}, WeightGroup::norm, l);
    add(p + "self_attn.q_proj.weight", {q, H}, WeightGroup::attention, l);
    add(p + "self_attn.q_norm.weight", {D}, WeightGroup::norm, l);
    if (s.kv_source < 0) {
      add(p + "self_attn.k_proj.weight", {kv, H}, WeightGroup::attention, l);
      if (!s.k_eq_v) add(p + "self_attn.v_proj.weight", {kv, H}, WeightGroup::attention, l);
      add(p + "self_attn.k_norm.weight", {D}, WeightGroup::norm, l);
    }
    add(p + "self_attn.o_proj.weight", {H, q}, WeightGroup::attention, l);
    add(p + "post_attention_layernorm.weight", {H}, WeightGroup::norm, l);
    add(p + "pre_feedforward_layernorm.weight", {H}, WeightGroup::norm, l);
    add(p + "mlp.gate_proj.weight", {s.mlp_width, H}, WeightGroup::dense_mlp, l);
    add(p + "mlp.up_proj.weight", {s.mlp_width, H}, WeightGroup::dense_mlp, l);
    add(p + "mlp.down_proj.weight", {H, s.mlp_width}, WeightGroup::dense_mlp, l);
    add(p + "post_feedforward_layernorm.weight", {H}, WeightGroup::norm, l);
    if (s.moe) {
      const std::int64_t E = c.num_experts, I = c.moe_intermediate_size;
      add(p + "post_feedforward_layernorm_1.weight", {H}, WeightGroup::norm, l);
      if (native_moe) {
        add(p + "moe.gate.proj.weight", {E, H}, WeightGroup::router, l);
        add(p + "moe.gate.scale", {H}, WeightGroup::router, l);
        add(p + "moe.experts.gate_and_up_projs", {E, H, 2 * I}, WeightGroup::experts, l);
        add(p + "moe.experts.down_projs", {E, I, H}, WeightGroup::experts, l);
      } else {
        add(p + "router.proj.weight", {E, H}, WeightGroup::router, l);
        add(p + "router.scale", {H}, WeightGroup::router, l);
        add(p + "router.per_expert_scale", {E}, WeightGroup::router, l);
        add(p + "experts.gate_up_proj", {E, 2 * I, H}, WeightGroup::experts, l);
        add(p + "experts.down_proj", {E, H, I}, WeightGroup::experts, l);
      }
      add(p + "pre_feedforward_layernorm_2.weight", {H}, WeightGroup::norm, l);
      add(p + "post_feedforward_layernorm_2.weight", {H}, WeightGroup::norm, l);
    }
    if (s.ple_width > 0) {
      add(p + "per_layer_input_gate.weight", {s.ple_width, H}, WeightGroup::per_layer_input, l);
      add(p + "per_layer_projection.weight", {H, s.ple_width}, WeightGroup::per_layer_input, l);
      add(p + "post_per_layer_input_norm.weight", {H}, WeightGroup::norm, l);
    }
    add(p + "layer_scalar", {1}, WeightGroup::layer_scalar, l, /*trainable=*/false);
  }
  add("norm.weight", {H}, WeightGroup::norm);
  if (!c.tie_word_embeddings) add("lm_head.weight", {c.vocab_size, H}, WeightGroup::head);
  return out;
}

bool ignored_when_unexpected(const TextConfig& c, const std::string& name) {
  static const std::regex shared_kv(
      R"(layers\.(\d+)\.self_attn\.(k_proj|v_proj)\.weight|layers\.(\d+)\.self_attn\.k_norm\.weight)");
  std::smatch m;
  if (!std::regex_match(name, m, shared_kv)) return false;
  const int layer = std::stoi(m[1].matched ? m[1].str() : m[3].str());
  return layer < c.num_hidden_layers && c.layers[layer].kv_source >= 0;
}

}  // namespace g4

namespace g4 {

ParameterCounts count_parameters(const TextConfig& c) {
  // parse_config bounds the total of a parsed config (2^53); checked all the same, for a TextConfig built by
  // hand.
  ParameterCounts n;
  for (const ExpectedTensor& t : expected_text_tensors(c)) {
    if (!t.trainable) continue;
    const std::int64_t numel = checked_numel(t.shape, "parameter count of ", t.name);
    n.total = checked_add(n.total, numel, "parameter count of the text model");
    if (t.group == WeightGroup::experts) n.experts += numel;
    if (t.group == WeightGroup::embedding || t.group == WeightGroup::head) n.embeddings += numel;
    if (t.name == "embed_tokens_per_layer.weight") n.per_layer_embeddings += numel;
  }
  n.active_per_token = n.total;
  if (c.enable_moe_block && c.num_experts > 0) {
    // Integer arithmetic: experts is a multiple of num_experts, so this is exact.
    n.active_per_token -= n.experts / c.num_experts * (c.num_experts - c.top_k_experts);
  }
  return n;
}

std::vector<std::pair<std::string, Shape>> expected_vision_tensors(const VisionConfig& c,
                                                                   std::int64_t text_hidden_size) {
  const std::int64_t H = c.hidden_size, I = c.intermediate_size, D = c.head_dim;
  const std::int64_t q = c.num_attention_heads * D, kv = c.num_key_value_heads * D;
  const std::string tower = "model.vision_tower.";
  std::vector<std::pair<std::string, Shape>> out = {
      {tower + "patch_embedder.input_proj.weight", {H, 3LL * c.patch_size * c.patch_size}},
      {tower + "patch_embedder.position_embedding_table", {2, c.position_embedding_size, H}}};
  const auto linear = [&](const std::string& name, Shape shape) {
    out.emplace_back(name + ".linear.weight", std::move(shape));
    if (c.use_clipped_linears)
      for (const char* bound : {".input_min", ".input_max", ".output_min", ".output_max"})
        out.emplace_back(name + bound, Shape{});
  };
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = tower + "encoder.layers." + std::to_string(l) + ".";
    for (const char* norm : {"input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                             "post_feedforward_layernorm"})
      out.emplace_back(p + norm + ".weight", Shape{H});
    linear(p + "self_attn.q_proj", {q, H});
    linear(p + "self_attn.k_proj", {kv, H});
    linear(p + "self_attn.v_proj", {kv, H});
    linear(p + "self_attn.o_proj", {H, q});
    out.emplace_back(p + "self_attn.q_norm.weight", Shape{D});
    out.emplace_back(p + "self_attn.k_norm.weight", Shape{D});
    linear(p + "mlp.gate_proj", {I, H});
    linear(p + "mlp.up_proj", {I, H});
    linear(p + "mlp.down_proj", {H, I});
  }
  if (c.standardize) {
    out.emplace_back(tower + "std_bias", Shape{H});
    out.emplace_back(tower + "std_scale", Shape{H});
  }
  out.emplace_back("model.embed_vision.embedding_projection.weight", Shape{text_hidden_size, H});
  return out;
}

}  // namespace g4
