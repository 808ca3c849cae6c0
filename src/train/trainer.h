// trainer.h: the training loop behind `g4moe train`: data, gradient accumulation with global-token
// normalisation, clipping, AdamW with a schedule, freezing, eval loss, metrics (JSONL + PNG), checkpoints in
// HF format, exact resume, and a clean stop on SIGINT or SIGTERM (under mpirun also SIGUSR1; it saves, then
// exits 130; train/stop_signals.h).
//
// What it refuses (one g4::Error line each): an output.dir holding an earlier run without output.overwrite
// (train/run_directory.h); resume files that do not fit the model (train/train_state.h); a resumed recipe
// that changed what cannot change mid-run (data, sequence length, batch shape, model) unless
// `allow_recipe_change`; a train.freeze pattern that matches nothing. Non-finite values: NaN or Inf weights
// in the model it starts from are an error; at the first non-finite loss or gradient norm it stops before
// the update and names the newest checkpoint whose own weights gave a finite loss; a gradient norm of 0 is a
// warning.
//
// Determinism: with the same recipe, thread count and build, a run resumed from a checkpoint reproduces the
// uninterrupted run's losses bit for bit (no randomness after the seeded data shuffle; the data cursor,
// optimizer moments and step are restored; every parallel reduction has a fixed order).
#pragma once

#include <functional>
#include <string>

#include "data/tokenizer.h"
#include "model/gemma4_model.h"
#include "train/recipe.h"

namespace g4 {

struct TrainOutcome {
  int exit_code = 0;  // 0 done, 130 stopped by SIGINT after saving
  std::int64_t steps_done = 0;
  double last_loss = 0;
};

// Called on every rank with the trained model and the run's tokenizer when a run ends normally (`root`: this
// rank speaks for the job); the CLI prints its sample here.
using AfterTraining = std::function<void(const Gemma4Model& model, const Tokenizer& tokenizer, bool root)>;

// `device`: where the model trains (the host's allocator, or a GPU's for train.device cuda: the caller
// resolves the recipe's device, since train/ does not link a GPU backend). On a GPU the f32 master weights,
// gradients and AdamW moments live there and the forward and backward run in train.dtype
// (train/compute_weights.h); checkpoints and the AfterTraining hook get host copies, so a run resumes on
// either device.
TrainOutcome run_training(const Recipe& recipe, const std::string& resume_dir, Allocator& device,
                          bool allow_recipe_change = false, const AfterTraining& after = {});

}  // namespace g4
