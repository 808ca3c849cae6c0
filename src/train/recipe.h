// recipe.h: a training recipe: YAML file plus `key=value` command-line overrides (dotted keys, values
// parsed as YAML scalars), checked into a typed struct. Unknown keys are errors (a typo must not be ignored).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/json.h"

namespace g4 {

struct Recipe {
  // model
  std::string model_preset = "tiny-moe";  // used when model_path is empty
  std::string model_path;                 // an HF checkpoint directory to fine-tune
  std::uint64_t model_seed = 1234;
  // data
  std::string data_path;
  std::int64_t seq_len = 128;
  double eval_fraction = 0.05;
  bool truncate = true;
  std::uint64_t data_seed = 0;
  // train
  std::int64_t steps = 100;
  std::int64_t batch_size = 8;  // rows per micro-batch
  std::int64_t grad_accumulation = 1;
  double lr = 3e-3;
  std::string schedule = "cosine";  // constant | cosine | linear
  std::int64_t warmup_steps = 0;
  double min_lr_ratio = 0.1;
  double weight_decay = 0.01;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double max_grad_norm = 1.0;       // 0 = no clipping
  bool recompute = false;           // activation recomputation per layer
  std::vector<std::string> freeze;  // regular expressions on parameter names
  std::int64_t eval_every = 50;
  std::int64_t log_every = 10;
  // output
  std::string output_dir = "runs/g4moe";
  std::int64_t save_every = 0;  // 0 = only at the end
  // sample
  std::string sample_prompt;
  std::int64_t sample_tokens = 0;
  // parallel (under mpirun; train/parallel_training.h)
  std::int64_t ep = 1;                  // expert-parallel size: consecutive ranks sharing the experts
  std::string dispatcher = "alltoall";  // alltoall | allgather
  std::int64_t zero = 0;                // ZeRO stage: 0 (replicated AdamW moments) or 1 (sharded over DP)

  Json to_json() const;
};

// Every key with its default and meaning, for --help.
std::string recipe_keys_help();

Recipe load_recipe(const std::string& yaml_path, const std::vector<std::string>& overrides);
Recipe recipe_from_json(const Json& doc, const std::string& where);

}  // namespace g4
