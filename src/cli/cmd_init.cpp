// cmd_init.cpp: `g4moe init --preset NAME|--config config.json --out DIR [--seed N] [--overwrite]`: a
// randomly initialised model written as a Hugging Face checkpoint (transformers' initialisation: normal(0,
// 0.02), norms at one), the vision tower and embed_vision included when the config has a vision_config.
#include <cstdio>
#include <memory>

#include "cli/cli_common.h"
#include "core/error.h"
#include "io/output_paths.h"
#include "train/presets.h"
#include "train/train_checkpoint.h"

namespace g4::cli {

namespace {

struct InitOptions {
  std::string preset, config, out;
  std::uint64_t seed = 1234;
  bool overwrite = false;
};

// The dtype config.json declares for the weights ("dtype", or the older "torch_dtype"); f32 when absent.
DType declared_dtype(const Json& doc) {
  for (const char* key : {"dtype", "torch_dtype"}) {
    if (!doc.contains(key) || !doc[key].is_string()) continue;
    const std::string d = doc[key].get<std::string>();
    if (d == "bfloat16") return DType::bf16;
    if (d == "float16") return DType::f16;
    return DType::f32;
  }
  return DType::f32;
}

}  // namespace

Action register_init(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("init", "Write a randomly initialised Gemma 4 model as a Hugging Face checkpoint.");
  auto o = std::make_shared<InitOptions>();
  cmd->add_option("--preset", o->preset, "built-in configuration (tiny-moe)");
  cmd->add_option("--config", o->config, "a config.json to initialise instead (either layout)");
  cmd->add_option("--out", o->out,
                  "output directory (written atomically; must not exist or be empty unless --overwrite)")
      ->required();
  cmd->add_flag("--overwrite", o->overwrite,
                "replace what is at --out (by default an existing output is an error)");
  cmd->add_option("--seed", o->seed, "random seed")->capture_default_str();
  return [o] {
    check(o->preset.empty() != o->config.empty(), "give exactly one of --preset and --config");
    refuse_existing_output(o->out, o->overwrite, "choose another --out, or pass --overwrite to replace it");
    const Json doc = o->preset.empty() ? read_json_file(o->config) : preset_config(o->preset);
    Gemma4Model model = init_gemma4_model(doc, o->seed);
    model.storage_dtype = declared_dtype(doc);
    for (auto& [name, t] : model.carried) t = t.to_dtype(model.storage_dtype);  // the towers, as declared
    CheckpointOptions options;
    options.replace_existing = o->overwrite;
    save_hf_checkpoint(o->out, model, doc, options);
    std::printf("{\"out\": \"%s\", \"parameters\": %lld}\n", o->out.c_str(),
                static_cast<long long>(count_parameters(model.config.text).total));
    return 0;
  };
}

}  // namespace g4::cli
