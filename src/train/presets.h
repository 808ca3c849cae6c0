// presets.h: built-in model configurations (a config.json document each) and random initialisation.
//
// `tiny-moe` is a Gemma 4 MoE in miniature for CPU training demos and tests: 4 layers (3 sliding + 1 full
// with K=V and a wider head), 8 experts top-2 beside the dense MLP, a 264-token byte-level vocabulary.
// `gemma-4-26b-a4b` is the released 26B-A4B's text model (30 layers, 128 experts top-8, vocabulary 262,144),
// for full-size benchmarks and memory plans with random weights (`g4moe init --preset gemma-4-26b-a4b`).
// Initialisation follows transformers' _init_weights: normal(0, initializer_range) for linears, experts and
// embeddings; ones for norm weights, router scale, per_expert_scale and layer_scalar. Tensors of 2^24
// elements or more are drawn in parallel chunks with their own seeds (deterministic in `seed` whatever the
// thread count).
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

// A model with the given config and freshly initialised weights (deterministic in `seed`); with a
// vision_config, the vision tower and embed_vision too (in Gemma4Model::carried, checkpoint names).
Gemma4Model init_gemma4_model(const Json& config_doc, std::uint64_t seed, double initializer_range = 0.02);

}  // namespace g4
