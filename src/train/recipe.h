// recipe.h: a training recipe: YAML file plus `key=value` command-line overrides (dotted keys, values
// parsed as YAML), checked into a typed struct.
//
// Invariants: every key is a canonical key or one of its aliases (HF Trainer / NeMo names such as
// train.max_steps for train.steps); an unknown key is an error with a "did you mean" (a typo must not be
// ignored); a section (train, data, ...) is a mapping; one source (the file, or the command line) names a key
// at most once; an override replaces the file's value. Every number is finite and in its range, and each
// error is one line naming the key and the file (or "command line").
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
  std::string eval_data_path;  // a separate eval file; when set, eval_fraction is not used
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
  std::int64_t warmup_steps = 0;    // set from warmup_ratio when that is > 0
  double warmup_ratio = 0;          // share of steps to warm up over (rounded up)
  double min_lr_ratio = 0.1;
  double weight_decay = 0.01;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double max_grad_norm = 1.0;  // 0 = no clipping
  bool recompute = false;      // activation recomputation per layer
  std::string device = "cpu";  // cpu | cuda (one GPU)
  std::string dtype = "auto";  // auto (f32 on cpu, bf16 on cuda) | f32 | bf16 (cuda; f32 masters)
  std::string vision =
      "frozen";  // image-text data: frozen | projection | tower (what of the vision side trains)
  std::vector<std::string> freeze;  // regular expressions on parameter names
  std::int64_t eval_every = 50;
  std::int64_t log_every = 10;
  // output
  std::string output_dir = "runs/g4moe";
  std::int64_t save_every = 0;        // 0 = only at the end
  std::int64_t save_total_limit = 0;  // checkpoints kept: the newest N (0 = all)
  bool overwrite = false;             // may a new run write into an output_dir holding a run's files
  // sample
  std::string sample_prompt;
  std::int64_t sample_tokens = 0;
  // parallel (under mpirun; train/parallel_training.h)
  std::int64_t ep = 1;                  // expert-parallel size: consecutive ranks sharing the experts
  std::string dispatcher = "alltoall";  // alltoall | allgather
  std::int64_t zero = 0;                // ZeRO stage: 0 (replicated AdamW moments) or 1 (sharded over DP)

  // A flat object of canonical keys ("train.steps": 100, ...), which recipe_from_json reads back.
  Json to_json() const;
};

// Every key with its default and meaning, for --help.
std::string recipe_keys_help();

// `yaml_path` may be empty (overrides alone); errors in overrides name the "command line".
Recipe load_recipe(const std::string& yaml_path, const std::vector<std::string>& overrides);
// `doc` in sections ({"train": {"steps": 5}}) or flat ({"train.steps": 5}, as to_json writes it).
Recipe recipe_from_json(const Json& doc, const std::string& where);

// Keys that must not change when a run resumes (model.preset, model.path, model.seed, data.path,
// data.eval_path, data.seq_len, data.eval_fraction, data.truncate, data.seed, train.batch_size,
// train.grad_accumulation) whose value in `saved_recipe` (a checkpoint's Recipe::to_json()) differs from
// `current`'s. A key the saved recipe lacks (an older checkpoint) is no conflict; a saved recipe that is not
// a JSON object gives {"recipe"}. Never throws.
std::vector<std::string> resume_conflicts(const Json& saved_recipe, const Recipe& current);

}  // namespace g4
