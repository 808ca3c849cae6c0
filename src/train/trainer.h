// trainer.h: the training loop behind `g4moe train`: data, gradient accumulation with global-token
// normalisation, clipping, AdamW with a schedule, freezing, eval loss, metrics (JSONL + PNG), checkpoints in
// HF format, exact resume, and a clean stop on SIGINT (under mpirun also SIGTERM / SIGUSR1; it saves, then
// exits 130; train/stop_signals.h).
//
// Determinism: with the same recipe, thread count and build, a run resumed from a checkpoint reproduces the
// uninterrupted run's losses bit for bit (no randomness after the seeded data shuffle; the data cursor,
// optimizer moments and step are restored; every parallel reduction has a fixed order).
#pragma once

#include <string>

#include "train/recipe.h"

namespace g4 {

struct TrainOutcome {
  int exit_code = 0;  // 0 done, 130 stopped by SIGINT after saving
  std::int64_t steps_done = 0;
  double last_loss = 0;
};

TrainOutcome run_training(const Recipe& recipe, const std::string& resume_dir);

}  // namespace g4
