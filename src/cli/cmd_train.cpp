// cmd_train.cpp: `g4moe train --config recipe.yaml [key=value ...] [--resume CHECKPOINT]`.
#include <cstdio>
#include <memory>

#include "cli/cli_common.h"
#include "dist/communicator.h"
#include "train/trainer.h"

namespace g4::cli {

namespace {

struct TrainOptions {
  std::string config, resume;
  std::vector<std::string> overrides;
};

}  // namespace

Action register_train(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "train",
      "Train or fine-tune a Gemma 4 model on the CPU from a YAML recipe. Writes <output.dir>/metrics.jsonl, "
      "loss.png and checkpoint-<step>/ (Hugging Face format, plus optimizer and trainer state for --resume). "
      "Ctrl-C saves a checkpoint and exits with code 130. Under mpirun (parallel.ep, parallel.zero), every "
      "rank "
      "stops after the same step and they save together: on Ctrl-C within OpenMPI's grace time "
      "(OMPI_MCA_odls_base_sigkill_timeout, default 1 s; mpirun then exits 1), or with no deadline on "
      "`kill -USR1 <mpirun pid>` (exit 130).");
  cmd->footer("Recipe keys (YAML sections, or key=value on the command line):\n" + recipe_keys_help());
  auto o = std::make_shared<TrainOptions>();
  cmd->add_option("--config", o->config, "YAML recipe");
  cmd->add_option("--resume", o->resume,
                  "continue from this checkpoint directory (bit-exact on the same machine)");
  cmd->add_option("overrides", o->overrides, "key=value overrides of the recipe, e.g. train.steps=50");
  return [o] {
    const Recipe recipe = load_recipe(o->config, o->overrides);
    const TrainOutcome outcome = run_training(recipe, o->resume);
    if (world_communicator().rank() == 0)  // under mpirun, rank 0 speaks for the job
      std::printf("{\"steps\": %lld, \"final_loss\": %.6f}\n", static_cast<long long>(outcome.steps_done),
                  outcome.last_loss);
    return outcome.exit_code;
  };
}

}  // namespace g4::cli
