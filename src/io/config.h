// config.h: config.json of a Gemma 4 checkpoint, parsed and resolved into core/gemma4_config.h's ModelConfig.
//
// Both layouts are accepted: Gemma4ForConditionalGeneration (model_type "gemma4", text fields under
// "text_config") and Gemma4ForCausalLM (model_type "gemma4_text"); both head-dim forms: "per_layer_config"
// (what transformers 5.17 writes) and "global_head_dim"/"num_global_key_value_heads" (the released hub
// configs). Defaults are transformers 5.17's. Invariant: a ModelConfig that parse_config returns is
// self-consistent (every check in validate_text_config holds); contradictions are g4::Errors naming the file.
#pragma once

#include <string>

#include "core/gemma4_config.h"
#include "io/json.h"

namespace g4 {

ModelConfig parse_config(const Json& doc, const std::string& where);
ModelConfig load_config(const std::string& path);  // path of a config.json or of a checkpoint directory

// Checks the resolved config for contradictions; parse_config calls it.
void validate_text_config(const TextConfig& text, const std::string& where);

}  // namespace g4
