#include "train/checkpoint_layout.h"

#include "moe/state_dict_adapter.h"

namespace g4 {

namespace {

// The tensors of `weights` by native name: the MoE block's (".moe.", converted by the adapter) apart from the
// rest (already in the checkpoint's names and layout).
struct SplitTensors {
  std::vector<std::pair<std::string, Tensor>> plain;
  StateDict native_moe;
};

SplitTensors split_moe(const ModelConfig& config, const Gemma4Weights& weights) {
  SplitTensors out;
  Gemma4Weights& visited = const_cast<Gemma4Weights&>(weights);  // read only
  for_each_parameter(config, visited, [&](const std::string& name, Tensor& t) {
    if (name.find(".moe.") != std::string::npos)
      out.native_moe[name] = t;
    else
      out.plain.emplace_back(name, t);
  });
  return out;
}

}  // namespace

std::vector<std::pair<std::string, Tensor>> weights_in_hf_layout(const Gemma4Model& model) {
  SplitTensors split = split_moe(model.config, model.weights);
  std::vector<std::pair<std::string, Tensor>> out = std::move(split.plain);
  if (!split.native_moe.empty()) {
    AdapterOptions options;
    options.text_prefix = model.config.text_prefix;
    for (auto& [name, t] : gemma4_moe_to_hf(split.native_moe, options)) out.emplace_back(name, t);
  }
  for (const LayerSpec& s : model.config.text.layers)
    out.emplace_back(model.config.text_prefix + "layers." + std::to_string(s.index) + ".layer_scalar",
                     Tensor::from_floats({1}, {model.weights.layers[s.index].layer_scalar}));
  return out;
}

std::vector<std::pair<std::string, Tensor>> gradients_in_checkpoint_layout(const ModelConfig& config,
                                                                           Gemma4Weights& grads,
                                                                           const Checkpoint& ckpt) {
  SplitTensors split = split_moe(config, grads);
  std::vector<std::pair<std::string, Tensor>> out = std::move(split.plain);
  if (split.native_moe.empty()) return out;
  if (ckpt.contains(split.native_moe.begin()->first)) {  // a native checkpoint: its own layout is ours
    for (auto& [name, g] : split.native_moe) out.emplace_back(name, g);
    return out;
  }
  StateDict hf_weights;
  for (const LayerSpec& s : config.text.layers) {
    if (!s.moe) continue;
    const std::string p = config.text_prefix + "layers." + std::to_string(s.index) + ".";
    hf_weights[p + "experts.down_proj"] = ckpt.read_f32(p + "experts.down_proj");
    if (ckpt.contains(p + "router.per_expert_scale"))
      hf_weights[p + "router.per_expert_scale"] = ckpt.read_f32(p + "router.per_expert_scale");
  }
  for (auto& [name, g] : gemma4_moe_grads_to_hf(split.native_moe, hf_weights)) out.emplace_back(name, g);
  return out;
}

}  // namespace g4
