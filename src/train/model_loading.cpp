#include "train/model_loading.h"

#include <optional>

#include "core/error.h"
#include "io/config.h"
#include "model/weight_layout.h"

namespace g4 {

bool is_text_model_tensor(const ModelConfig& config, const std::string& name) {
  return name == "lm_head.weight" || name.rfind(config.text_prefix, 0) == 0;
}

Gemma4Weights load_gemma4_weights(const ModelConfig& config, const Checkpoint& ckpt, bool* native_moe_out,
                                  ExpertRange experts) {
  const TextConfig& c = config.text;
  std::vector<std::string> moe_names;
  for (const std::string& n : ckpt.names())
    if (n.rfind(config.text_prefix, 0) == 0) moe_names.push_back(n);
  const bool native_moe = c.enable_moe_block && detect_layout(moe_names) == Layout::native;
  if (native_moe_out) *native_moe_out = native_moe;
  // Check every expected tensor first, so that a bad checkpoint fails before any large read.
  for (const ExpectedTensor& t : expected_text_tensors(c, native_moe)) {
    const std::string name = t.name == "lm_head.weight" ? t.name : config.text_prefix + t.name;
    const TensorInfo& info = ckpt.info(name);
    check(info.shape == t.shape, "tensor ", name, " has shape ", shape_str(info.shape),
          " but the config implies ", shape_str(t.shape), " (", ckpt.file_of(name), ")");
  }
  const bool ranged = experts.count > 0;
  if (ranged)
    check(experts.start >= 0 && experts.start + experts.count <= c.num_experts, "expert range [",
          experts.start, ", ", experts.start + experts.count, ") is outside the model's ", c.num_experts,
          " experts");
  // A fused expert tensor ([E, ...], either layout) or per_expert_scale ([E]): with a range, only the local
  // experts' rows are copied out of the mapping (a byte range of the tensor), never the whole tensor.
  auto read_experts = [&](const std::string& name) {
    return ranged ? ckpt.read_rows_f32(name, experts.start, experts.count) : ckpt.read_f32(name);
  };
  Gemma4Weights w;
  w.layers.resize(c.layers.size());
  for_each_parameter(config, w, [&](const std::string& name, Tensor& t) {
    if (!native_moe && name.find(".moe.") != std::string::npos) return;
    t = name.find(".moe.experts.") != std::string::npos ? read_experts(name) : ckpt.read_f32(name);
  });
  for (const LayerSpec& s : c.layers) {
    const std::string p = config.text_prefix + "layers." + std::to_string(s.index) + ".";
    w.layers[s.index].layer_scalar = ckpt.read_f32(p + "layer_scalar").f32()[0];
    if (!s.moe || native_moe) continue;
    // The adapter converts the local experts alone: transposes and the per_expert_scale fold act on each
    // expert separately, so converting a slice equals slicing the converted whole, bit for bit.
    StateDict hf;
    for (const char* n : {"router.proj.weight", "router.scale"}) hf[p + n] = ckpt.read_f32(p + n);
    for (const char* n : {"router.per_expert_scale", "experts.gate_up_proj", "experts.down_proj"})
      hf[p + n] = read_experts(p + n);
    StateDict native =
        gemma4_moe_from_hf(hf, AdapterOptions{1, 0, [](const std::string&) {}, config.text_prefix});
    MoeWeights& m = w.layers[s.index].moe;
    m.router_proj = native.at(p + "moe.gate.proj.weight");
    m.router_scale = native.at(p + "moe.gate.scale");
    m.gate_and_up = native.at(p + "moe.experts.gate_and_up_projs");
    m.down = native.at(p + "moe.experts.down_projs");
  }
  return w;
}

Gemma4Model load_gemma4_model(const std::string& dir, ExpertRange experts) {
  Gemma4Model m;
  m.config = load_config(dir);
  const Checkpoint ckpt = Checkpoint::open(dir);
  m.weights = load_gemma4_weights(m.config, ckpt, nullptr, experts);
  std::optional<DType> shared;
  bool mixed = false;
  for (const std::string& name : ckpt.names()) {
    const DType d = ckpt.info(name).dtype;
    if (!dtype_is_float(d)) continue;
    mixed = mixed || (shared && *shared != d);
    shared = d;
  }
  m.storage_dtype = shared && !mixed ? *shared : DType::f32;
  for (const std::string& name : ckpt.names())
    if (!is_text_model_tensor(m.config, name)) m.carried.emplace_back(name, ckpt.read(name));
  return m;
}

}  // namespace g4
