// presets.h: built-in model configurations (a config.json document each) and random initialisation.
//
// `tiny-moe` is a Gemma 4 MoE in miniature for CPU training demos and tests: 4 layers (3 sliding + 1 full
// with K=V and a wider head), 8 experts top-2 beside the dense MLP, a 264-token byte-level vocabulary.
// Initialisation follows transformers' _init_weights: normal(0, initializer_range) for linears, experts and
// embeddings; ones for norm weights, router scale, per_expert_scale and layer_scalar.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/json.h"
#include "model/gemma4_model.h"
#include "model/weight_layout.h"

namespace g4 {

std::vector<std::string> preset_names();
Json preset_config(const std::string& name);  // config.json document (model_type gemma4_text)

// A model with the given config and freshly initialised weights (deterministic in `seed`).
Gemma4Model init_gemma4_model(const Json& config_doc, std::uint64_t seed, double initializer_range = 0.02);

}  // namespace g4
