// cmd_train.cpp: `g4moe train --config recipe.yaml [key=value ...] [--resume CHECKPOINT]`.
#include <cstdio>
#include <memory>

#include "cli/cli_common.h"
#include "dist/communicator.h"
#include "generate/generation.h"
#include "train/trainer.h"

namespace g4::cli {

namespace {

struct TrainOptions {
  std::string config, resume;
  std::vector<std::string> overrides;
  bool overwrite = false, allow_recipe_change = false;
};

}  // namespace

Action register_train(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "train",
      "Train or fine-tune a Gemma 4 model on the CPU from a YAML recipe. Writes <output.dir>/metrics.jsonl, "
      "loss.png and checkpoint-<step>/ (Hugging Face format, plus optimizer and trainer state for --resume). "
      "Ctrl-C or SIGTERM saves a checkpoint and exits with code 130. An output.dir that holds an earlier run "
      "is "
      "refused unless --overwrite or --resume; a NaN/Inf loss or gradient stops the run before the update "
      "and "
      "names the last checkpoint whose own loss was finite. Under mpirun (parallel.ep, parallel.zero), every "
      "rank "
      "stops after the same step and they save together: on Ctrl-C within OpenMPI's grace time "
      "(OMPI_MCA_odls_base_sigkill_timeout, default 1 s; mpirun then exits 1), or with no deadline on "
      "`kill -USR1 <mpirun pid>` (exit 130).");
  cmd->footer("Recipe keys (YAML sections, or key=value on the command line):\n" + recipe_keys_help());
  auto o = std::make_shared<TrainOptions>();
  cmd->add_option("--config", o->config, "YAML recipe");
  cmd->add_option("--resume", o->resume,
                  "continue from this checkpoint directory (bit-exact on the same machine)");
  cmd->add_flag("--overwrite", o->overwrite,
                "start a new run in an output.dir that holds an earlier run's files (same as "
                "output.overwrite=true): its metrics.jsonl and loss.png are replaced, and checkpoints of the "
                "same step as they are written");
  cmd->add_flag(
      "--allow-recipe-change", o->allow_recipe_change,
      "with --resume: continue although the recipe changed keys that should stay fixed within a run "
      "(model, data, data.seq_len, batch shape)");
  cmd->add_option("overrides", o->overrides, "key=value overrides of the recipe, e.g. train.steps=50");
  return [o] {
    std::vector<std::string> overrides = o->overrides;
    if (o->overwrite) overrides.push_back("output.overwrite=true");
    const Recipe recipe = load_recipe(o->config, overrides);
    // The sample: a greedy continuation of sample.prompt by the trained model (every rank takes part).
    const AfterTraining sample = [&recipe](const Gemma4Model& model, const Tokenizer& tokenizer, bool root) {
      if (recipe.sample_tokens <= 0) return;
      std::vector<std::int64_t> prompt{tokenizer.bos};
      const auto body = tokenizer.encode(recipe.sample_prompt);
      prompt.insert(prompt.end(), body.begin(), body.end());
      GenerationParams greedy;
      greedy.max_new_tokens = recipe.sample_tokens;
      greedy.stop_ids = {tokenizer.eos};
      const auto out = generate(model, {prompt}, greedy, host_allocator(), DType::f32);
      if (root) std::printf("sample: %s%s\n", recipe.sample_prompt.c_str(), tokenizer.decode(out[0]).c_str());
    };
    Allocator& device = device_allocator(recipe.device, "train");
    const TrainOutcome outcome = run_training(recipe, o->resume, device, o->allow_recipe_change, sample);
    if (world_communicator().rank() == 0)  // under mpirun, rank 0 speaks for the job
      std::printf("{\"steps\": %lld, \"final_loss\": %.6f}\n", static_cast<long long>(outcome.steps_done),
                  outcome.last_loss);
    return outcome.exit_code;
  };
}

}  // namespace g4::cli
