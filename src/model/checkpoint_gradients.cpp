#include "model/checkpoint_gradients.h"

#include "moe/state_dict_adapter.h"

namespace g4 {

std::vector<std::pair<std::string, Tensor>> gradients_in_checkpoint_layout(const ModelConfig& config,
                                                                           Gemma4Weights& grads,
                                                                           const Checkpoint& ckpt) {
  std::vector<std::pair<std::string, Tensor>> out;
  StateDict native_moe;
  for_each_parameter(config, grads, [&](const std::string& name, Tensor& g) {
    if (name.find(".moe.") != std::string::npos) {
      native_moe[name] = g;
    } else {
      out.emplace_back(name, g);
    }
  });
  if (native_moe.empty()) return out;
  if (ckpt.contains(native_moe.begin()->first)) {  // a native checkpoint: its own layout is ours
    for (auto& [name, g] : native_moe) out.emplace_back(name, g);
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
  for (auto& [name, g] : gemma4_moe_grads_to_hf(native_moe, hf_weights)) out.emplace_back(name, g);
  return out;
}

}  // namespace g4
