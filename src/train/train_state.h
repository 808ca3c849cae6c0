// train_state.h: the two resume files of a training checkpoint, read as outside input.
//
// trainer_state.json: {"step", "data_cursor", "tokens_seen", "optimizer_steps", "recipe", ...}.
// optimizer.safetensors: "exp_avg.<name>" and "exp_avg_sq.<name>" (F32, the parameter's full shape: experts
// gathered) for every trainable parameter, and "master.<name>" (its fp32 value) when the checkpoint's weights
// are stored in a narrower dtype than the fp32 the optimizer updates.
//
// Invariants once a reader returns: every field has its type and range (counts >= 0, optimizer_steps <= step,
// tokens_seen finite); the moments are exactly the expected names, each pair present, F32, the expected
// shape, finite, exp_avg_sq >= 0; masters likewise (finite, expected shape). Anything else is one g4::Error
// naming the file and the field or tensor.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "core/tensor.h"
#include "io/json.h"

namespace g4 {

struct TrainerState {
  std::int64_t step = 0;             // optimizer steps taken when the checkpoint was written
  std::int64_t data_cursor = 0;      // next training row
  std::int64_t optimizer_steps = 0;  // AdamW's bias-correction count
  double tokens_seen = 0;
  Json recipe;  // the recipe of the run as saved (Recipe::to_json), or null in older checkpoints
};

TrainerState parse_trainer_state(const Json& doc, const std::string& where);

struct OptimizerFile {
  std::map<std::string, std::pair<Tensor, Tensor>> moments;  // name -> (exp_avg, exp_avg_sq)
  std::map<std::string, Tensor> masters;                     // name -> fp32 weights (when expected)
};

// `expected`: every trainable parameter's name and full shape.
OptimizerFile read_optimizer_file(const std::string& path, const std::map<std::string, Shape>& expected,
                                  bool expect_masters);

}  // namespace g4
