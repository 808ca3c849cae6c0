#include "train/train_checkpoint.h"

#include <filesystem>

#include "core/error.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "moe/state_dict_adapter.h"

namespace g4 {

namespace fs = std::filesystem;

namespace {

// The model's weights in the HF layout and names, in a stable order.
std::vector<std::pair<std::string, Tensor>> hf_tensors(Gemma4Model& model) {
  std::vector<std::pair<std::string, Tensor>> out;
  StateDict native_moe;
  for_each_parameter(model.config, model.weights, [&](const std::string& name, Tensor& t) {
    if (name.find(".moe.") != std::string::npos) {
      native_moe[name] = t;
    } else {
      out.emplace_back(name, t);
    }
  });
  if (!native_moe.empty()) {
    AdapterOptions options;
    options.text_prefix = model.config.text_prefix;
    for (auto& [name, t] : gemma4_moe_to_hf(native_moe, options)) out.emplace_back(name, t);
  }
  for (const LayerSpec& s : model.config.text.layers)
    out.emplace_back(model.config.text_prefix + "layers." + std::to_string(s.index) + ".layer_scalar",
                     Tensor::from_floats({1}, {model.weights.layers[s.index].layer_scalar}));
  return out;
}

void write_tensors_sharded(const std::string& dir,
                           const std::vector<std::pair<std::string, Tensor>>& tensors) {
  std::vector<TensorDecl> decls;
  for (const auto& [name, t] : tensors) decls.push_back({name, t.dtype(), t.shape()});
  ShardedWriter writer(dir, decls, 2ull << 30);
  for (const auto& [name, t] : tensors) writer.write(name, t.bytes());
  writer.finish();
}

}  // namespace

void save_hf_checkpoint(const std::string& dir, Gemma4Model& model, const Json& config_doc) {
  AdamW none;
  save_train_checkpoint(dir, model, config_doc, none, Json::object(), false);
  fs::remove(dir + "/optimizer.safetensors");
  fs::remove(dir + "/trainer_state.json");
}

void save_train_checkpoint(const std::string& dir, Gemma4Model& model, const Json& config_doc,
                           AdamW& optimizer, const Json& trainer_state, bool byte_tokenizer,
                           const std::string& tokenizer_dir) {
  const std::string tmp = dir + ".tmp";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    write_text_file_atomic(tmp + "/config.json", config_doc.dump(2) + "\n");
    write_tensors_sharded(tmp, hf_tensors(model));
    std::vector<std::pair<std::string, Tensor>> moments;
    for (auto& [name, m] : optimizer.state()) {
      moments.emplace_back("exp_avg." + name, m.first);
      moments.emplace_back("exp_avg_sq." + name, m.second);
    }
    write_safetensors(tmp + "/optimizer.safetensors", moments);
    Json state = trainer_state;
    state["optimizer_steps"] = optimizer.steps();
    write_text_file_atomic(tmp + "/trainer_state.json", state.dump(2) + "\n");
    if (byte_tokenizer)
      write_text_file_atomic(
          tmp + "/g4moe_tokenizer.json",
          Json{{"type", "byte"}, {"offset", 3}, {"pad_id", 0}, {"eos_id", 1}, {"bos_id", 2}}.dump(2) + "\n");
    if (!tokenizer_dir.empty())
      for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                            "tokenizer.model", "chat_template.jinja", "g4moe_tokenizer.json"})
        if (fs::exists(fs::path(tokenizer_dir) / f))
          fs::copy_file(fs::path(tokenizer_dir) / f, fs::path(tmp) / f);
  } catch (...) {
    fs::remove_all(tmp);
    throw;
  }
  // Swap into place: the old checkpoint goes only once the new one is complete.
  const std::string old = dir + ".old";
  fs::remove_all(old);
  if (fs::exists(dir)) fs::rename(dir, old);
  fs::rename(tmp, dir);
  fs::remove_all(old);
}

Json load_train_state(const std::string& dir, AdamW& optimizer) {
  const std::string state_path = dir + "/trainer_state.json";
  check(fs::exists(state_path), "not a g4moe training checkpoint (no trainer_state.json): ", dir);
  Json state = read_json_file(state_path);
  const auto moments = SafetensorsFile::open(dir + "/optimizer.safetensors");
  for (const TensorInfo& info : moments->tensors()) {
    const bool first = info.name.rfind("exp_avg.", 0) == 0;
    const std::string name = info.name.substr(first ? 8 : 11);
    auto& slot = optimizer.state()[name];
    (first ? slot.first : slot.second) = moments->read(info).to_f32();
  }
  optimizer.set_steps(
      json_int(json_require(state, "optimizer_steps", state_path), "optimizer_steps", state_path));
  return state;
}

}  // namespace g4
