// train_checkpoint.h: training checkpoints as Hugging Face checkpoint directories, plus what resuming needs.
//
// A checkpoint directory holds config.json and model.safetensors (shards + index when large) in the HF layout
// (MoE weights converted back by the state-dict adapter, per_expert_scale written as ones) and in the model's
// storage dtype (a bf16 checkpoint stays bf16), with the tensors it carries from its source unchanged (the
// vision and audio towers: Gemma4Model::carried), so transformers loads it; g4moe_tokenizer.json (the byte
// tokenizer) when the run used one; and, for `--resume`, optimizer.safetensors and trainer_state.json
// (train/train_state.h: AdamW moments, fp32 master weights when the storage dtype is narrower, step, data
// cursor, the recipe).
//
// Invariants: the directory appears complete or not at all (written under a fresh temporary sibling name and
// renamed into place; a failure, a full disk say, leaves any previous checkpoint untouched); an existing
// directory is replaced only when `replace_existing` says the caller may; non-finite weights are never
// written (g4::Error naming the tensor).
#pragma once

#include <string>

#include "io/json.h"
#include "model/gemma4_model.h"
#include "train/adamw.h"
#include "train/train_state.h"

namespace g4 {

struct CheckpointOptions {
  bool replace_existing = false;  // else an existing non-empty `dir` is an error
  bool byte_tokenizer = false;    // write g4moe_tokenizer.json
  // copy its tokenizer, image processor and generation settings in (tokenizer.json, tokenizer_config.json,
  // chat_template.jinja, processor_config.json, generation_config.json, ...)
  std::string tokenizer_dir;
};

// The HF checkpoint alone (config.json + weights).
void save_hf_checkpoint(const std::string& dir, Gemma4Model& model, const Json& config_doc,
                        const CheckpointOptions& options);

void save_train_checkpoint(const std::string& dir, Gemma4Model& model, const Json& config_doc,
                           AdamW& optimizer, const Json& trainer_state, const CheckpointOptions& options);

// Reads and validates trainer_state.json and optimizer.safetensors of `dir` against the trainable
// parameters (name -> full shape); restores the moments and step count into `optimizer` and returns the
// state. With `masters` (a model stored in a narrower dtype), the fp32 master weights by name land there.
TrainerState load_train_state(const std::string& dir, const std::map<std::string, Shape>& trainable,
                              AdamW& optimizer, std::map<std::string, Tensor>* masters);

}  // namespace g4
