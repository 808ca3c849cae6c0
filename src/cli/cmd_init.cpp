// cmd_init.cpp: `g4moe init --preset NAME|--config config.json --out DIR [--seed N]`: a randomly initialised
// model written as a Hugging Face checkpoint (transformers' initialisation: normal(0, 0.02), norms at one).
#include <cstdio>
#include <memory>

#include "cli/cli_common.h"
#include "core/error.h"
#include "model/presets.h"
#include "train/train_checkpoint.h"

namespace g4::cli {

namespace {

struct InitOptions {
  std::string preset, config, out;
  std::uint64_t seed = 1234;
};

}  // namespace

Action register_init(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("init", "Write a randomly initialised Gemma 4 model as a Hugging Face checkpoint.");
  auto o = std::make_shared<InitOptions>();
  cmd->add_option("--preset", o->preset, "built-in configuration (tiny-moe)");
  cmd->add_option("--config", o->config, "a config.json to initialise instead (either layout)");
  cmd->add_option("--out", o->out, "output directory (written atomically)")->required();
  cmd->add_option("--seed", o->seed, "random seed")->capture_default_str();
  return [o] {
    check(o->preset.empty() != o->config.empty(), "give exactly one of --preset and --config");
    const Json doc = o->preset.empty() ? read_json_file(o->config) : preset_config(o->preset);
    Gemma4Model model = init_gemma4_model(doc, o->seed);
    save_hf_checkpoint(o->out, model, doc);
    std::printf("{\"out\": \"%s\", \"parameters\": %lld}\n", o->out.c_str(),
                static_cast<long long>(count_parameters(model.config.text).total));
    return 0;
  };
}

}  // namespace g4::cli
