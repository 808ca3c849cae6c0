// train_checkpoint.h: training checkpoints as Hugging Face checkpoint directories, plus what resuming needs.
//
// A checkpoint directory holds config.json and model.safetensors (shards + index when large) in the HF layout
// (MoE weights converted back by the state-dict adapter, per_expert_scale written as ones), so transformers
// loads it; g4moe_tokenizer.json (the byte tokenizer) when the run used one; and, for `--resume`,
// optimizer.safetensors (AdamW moments by native parameter name) and trainer_state.json (step, data cursor,
// seeds, the recipe). Invariant: the directory appears complete or not at all: it is written as `<dir>.tmp`
// and renamed into place; a failure (a full disk, say) leaves any previous checkpoint untouched.
#pragma once

#include <string>

#include "io/json.h"
#include "model/gemma4_model.h"
#include "train/adamw.h"

namespace g4 {

// The HF checkpoint alone (config.json + weights), written atomically the same way.
void save_hf_checkpoint(const std::string& dir, Gemma4Model& model, const Json& config_doc);

// `tokenizer_dir`: a directory whose tokenizer files (tokenizer.json, tokenizer_config.json,
// special_tokens_map.json, tokenizer.model, chat_template.jinja) are copied in; empty with `byte_tokenizer`.
void save_train_checkpoint(const std::string& dir, Gemma4Model& model, const Json& config_doc,
                           AdamW& optimizer, const Json& trainer_state, bool byte_tokenizer,
                           const std::string& tokenizer_dir = "");

// Restores the optimizer moments and step count; returns trainer_state.json.
Json load_train_state(const std::string& dir, AdamW& optimizer);

}  // namespace g4
