#include "train/vision_loading.h"

#include <cmath>
#include <map>

#include "core/error.h"
#include "model/weight_layout.h"

namespace g4 {

namespace {

// `name`, whose shape expected_vision_tensors gives, in f32.
Tensor read_shaped(const Checkpoint& ckpt, const std::map<std::string, Shape>& shapes,
                   const std::string& name) {
  const Shape& shape = shapes.at(name);
  check(ckpt.contains(name), "the checkpoint ", ckpt.dir(), " has no tensor ", name,
        " (vision_config is present)");
  const TensorInfo& info = ckpt.info(name);
  check(info.shape == shape, "tensor ", name, " has shape ", shape_str(info.shape),
        ", vision_config implies ", shape_str(shape), " (", ckpt.dir(), ")");
  return ckpt.read_f32(name);
}

}  // namespace

VisionWeights load_vision_weights(const ModelConfig& m, const Checkpoint& ckpt) {
  check(m.vision.has_value(), "the model at ", ckpt.dir(), " has no vision_config: it takes no images");
  const VisionConfig& c = *m.vision;
  const std::int64_t H = c.hidden_size;
  std::map<std::string, Shape> shapes;
  for (auto& [name, shape] : expected_vision_tensors(c, m.text.hidden_size)) shapes[name] = shape;
  const std::string tower = "model.vision_tower.";
  VisionWeights w;
  w.layers.resize(static_cast<std::size_t>(c.num_hidden_layers));
  for_each_vision_parameter(w,
                            [&](const std::string& name, Tensor& t) { t = read_shaped(ckpt, shapes, name); });
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = tower + "encoder.layers." + std::to_string(l) + ".";
    VisionLayerWeights& L = w.layers[static_cast<std::size_t>(l)];
    if (c.use_clipped_linears) {
      for (auto [name, clip] : {std::pair{"self_attn.q_proj", &L.q_clip},
                                {"self_attn.k_proj", &L.k_clip},
                                {"self_attn.v_proj", &L.v_clip},
                                {"self_attn.o_proj", &L.o_clip},
                                {"mlp.gate_proj", &L.gate_clip},
                                {"mlp.up_proj", &L.up_clip},
                                {"mlp.down_proj", &L.down_clip}}) {
        const std::string base = p + name;
        const auto bound = [&](const char* which) {
          const float v = read_shaped(ckpt, shapes, base + which).f32()[0];
          check(!std::isnan(v), "clipping bound ", base + which, " is NaN (", ckpt.dir(), ")");
          return v;
        };
        *clip = {bound(".input_min"), bound(".input_max"), bound(".output_min"), bound(".output_max")};
        check(clip->input_min <= clip->input_max && clip->output_min <= clip->output_max,
              "clipping bounds of ", base, " are reversed (min > max) (", ckpt.dir(), ")");
      }
    }
  }
  if (c.standardize) {
    const Tensor bias = read_shaped(ckpt, shapes, tower + "std_bias");
    const Tensor scale = read_shaped(ckpt, shapes, tower + "std_scale");
    w.std_shift = Tensor(DType::f32, {H, 1});
    w.std_scale = Tensor(DType::f32, {H, H});
    for (std::int64_t j = 0; j < H; ++j) {
      w.std_shift.f32()[j] = -bias.f32()[j];
      w.std_scale.f32()[j * H + j] = scale.f32()[j];
    }
  }
  return w;
}

void for_each_vision_parameter(VisionWeights& w,
                               const std::function<void(const std::string& name, Tensor& tensor)>& visit) {
  const std::string tower = "model.vision_tower.";
  visit(tower + "patch_embedder.input_proj.weight", w.input_proj);
  visit(tower + "patch_embedder.position_embedding_table", w.position_table);
  for (std::size_t l = 0; l < w.layers.size(); ++l) {
    const std::string p = tower + "encoder.layers." + std::to_string(l) + ".";
    VisionLayerWeights& L = w.layers[l];
    visit(p + "input_layernorm.weight", L.input_norm);
    visit(p + "post_attention_layernorm.weight", L.post_attention_norm);
    visit(p + "pre_feedforward_layernorm.weight", L.pre_feedforward_norm);
    visit(p + "post_feedforward_layernorm.weight", L.post_feedforward_norm);
    visit(p + "self_attn.q_proj.linear.weight", L.q_proj);
    visit(p + "self_attn.k_proj.linear.weight", L.k_proj);
    visit(p + "self_attn.v_proj.linear.weight", L.v_proj);
    visit(p + "self_attn.o_proj.linear.weight", L.o_proj);
    visit(p + "self_attn.q_norm.weight", L.q_norm);
    visit(p + "self_attn.k_norm.weight", L.k_norm);
    visit(p + "mlp.gate_proj.linear.weight", L.gate_proj);
    visit(p + "mlp.up_proj.linear.weight", L.up_proj);
    visit(p + "mlp.down_proj.linear.weight", L.down_proj);
  }
  visit("model.embed_vision.embedding_projection.weight", w.embed_projection);
}

}  // namespace g4
