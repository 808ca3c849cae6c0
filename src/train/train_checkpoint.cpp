#include "train/train_checkpoint.h"

#include <filesystem>

#include "core/error.h"
#include "core/finite.h"
#include "io/output_paths.h"
#include "io/safetensors_writer.h"
#include "train/checkpoint_layout.h"

namespace g4 {

namespace fs = std::filesystem;

namespace {

// The model's weights in the HF layout and names (train/checkpoint_layout.h), in the model's storage dtype.
std::vector<std::pair<std::string, Tensor>> hf_tensors(Gemma4Model& model) {
  std::vector<std::pair<std::string, Tensor>> out = weights_in_hf_layout(model);
  for (auto& [name, t] : out) {
    const std::int64_t at = first_non_finite(t.bytes(), t.dtype(), t.numel());
    check(at < 0, "weight ", name, " holds a non-finite value (element ", at, "): no checkpoint is written");
    if (model.storage_dtype != DType::f32) t = t.to_dtype(model.storage_dtype);
  }
  out.insert(out.end(), model.carried.begin(), model.carried.end());  // host tensors, as stored
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

// The optimizer file: both moments of every trained parameter and, when the weights are stored narrower than
// fp32, the fp32 master copy the next steps must continue from.
std::vector<std::pair<std::string, Tensor>> optimizer_tensors(Gemma4Model& model, AdamW& optimizer) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& [name, m] : optimizer.state()) {
    out.emplace_back("exp_avg." + name, m.first);
    out.emplace_back("exp_avg_sq." + name, m.second);
  }
  if (model.storage_dtype != DType::f32)
    for_each_parameter(model.config, model.weights, [&](const std::string& name, Tensor& t) {
      if (optimizer.state().count(name)) out.emplace_back("master." + name, t);
    });
  return out;
}

// Writes into a fresh temporary directory with `fill`, then puts it in place of `dir`.
template <class Fill>
void write_checkpoint_dir(const std::string& dir, const CheckpointOptions& options, Fill fill) {
  refuse_existing_output(dir, options.replace_existing,
                         "choose another output directory, or pass --overwrite to replace it");
  const std::string tmp = create_temporary_directory(dir);
  try {
    fill(tmp);
    if (options.byte_tokenizer)
      write_text_file_atomic(
          tmp + "/g4moe_tokenizer.json",
          Json{{"type", "byte"}, {"offset", 3}, {"pad_id", 0}, {"eos_id", 1}, {"bos_id", 2}}.dump(2) + "\n");
    if (!options.tokenizer_dir.empty())
      for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                            "tokenizer.model", "chat_template.jinja", "g4moe_tokenizer.json",
                            "processor_config.json", "preprocessor_config.json", "generation_config.json"})
        if (fs::exists(fs::path(options.tokenizer_dir) / f))
          fs::copy_file(fs::path(options.tokenizer_dir) / f, fs::path(tmp) / f);
    replace_directory(tmp, dir);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);  // ours: created above
    throw;
  }
}

}  // namespace

void save_hf_checkpoint(const std::string& dir, Gemma4Model& model, const Json& config_doc,
                        const CheckpointOptions& options) {
  write_checkpoint_dir(dir, options, [&](const std::string& tmp) {
    write_text_file_atomic(tmp + "/config.json", config_doc.dump(2) + "\n");
    write_tensors_sharded(tmp, hf_tensors(model));
  });
}

void save_train_checkpoint(const std::string& dir, Gemma4Model& model, const Json& config_doc,
                           AdamW& optimizer, const Json& trainer_state, const CheckpointOptions& options) {
  write_checkpoint_dir(dir, options, [&](const std::string& tmp) {
    write_text_file_atomic(tmp + "/config.json", config_doc.dump(2) + "\n");
    write_tensors_sharded(tmp, hf_tensors(model));
    write_safetensors(tmp + "/optimizer.safetensors", optimizer_tensors(model, optimizer));
    Json state = trainer_state;
    state["optimizer_steps"] = optimizer.steps();
    write_text_file_atomic(tmp + "/trainer_state.json", state.dump(2) + "\n");
  });
}

TrainerState load_train_state(const std::string& dir, const std::map<std::string, Shape>& trainable,
                              AdamW& optimizer, std::map<std::string, Tensor>* masters) {
  const std::string state_path = dir + "/trainer_state.json";
  check(fs::exists(state_path), "not a g4moe training checkpoint (no trainer_state.json): ", dir);
  const TrainerState state = parse_trainer_state(read_json_file(state_path), state_path);
  OptimizerFile file = read_optimizer_file(dir + "/optimizer.safetensors", trainable, masters != nullptr);
  optimizer.state() = std::move(file.moments);
  optimizer.set_steps(state.optimizer_steps);
  if (masters) *masters = std::move(file.masters);
  return state;
}

}  // namespace g4
