// weight_layout.h: the tensors a Gemma 4 text model has in a Hugging Face checkpoint, derived from the
// resolved config: names (relative to the text prefix), shapes, and what each belongs to.
//
// Invariant: expected_text_tensors lists every tensor transformers 5.17 saves for the text model, in the
// HF layout ([out, in] linears; experts as [E, 2I, H] and [E, H, I]); `lm_head.weight` is listed (with an
// absolute name) only when the embeddings are not tied.
#pragma once

#include <string>
#include <vector>

#include "core/gemma4_config.h"
#include "core/tensor.h"

namespace g4 {

enum class WeightGroup {
  embedding,
  attention,
  dense_mlp,
  router,
  experts,
  norm,
  per_layer_input,
  layer_scalar,
  head
};

struct ExpectedTensor {
  std::string name;  // relative to the text prefix, except "lm_head.weight"
  Shape shape;
  WeightGroup group = WeightGroup::norm;
  int layer = -1;         // -1 for model-level tensors
  bool trainable = true;  // layer_scalar is a buffer, not a parameter
};

// `native_moe`: the MoE tensors in g4moe's native (NeMo) layout, as `g4moe convert --to native` writes them:
// layers.N.moe.gate.proj.weight [E,H], .moe.gate.scale [H], .moe.experts.gate_and_up_projs [E,H,2I],
// .moe.experts.down_projs [E,I,H] (per_expert_scale folded in, so absent).
std::vector<ExpectedTensor> expected_text_tensors(const TextConfig& config, bool native_moe = false);

// Every tensor transformers 5.17 saves for the vision tower and embed_vision, full names
// (model.vision_tower.*, model.embed_vision.*) and shapes; the clipping bounds (scalars) when the config uses
// clipped linears, the standardisation buffers when it standardises.
std::vector<std::pair<std::string, Shape>> expected_vision_tensors(const VisionConfig& vision,
                                                                   std::int64_t text_hidden_size);

// transformers drops these on load without complaint: k/v projections and k_norm of KV-shared layers.
bool ignored_when_unexpected(const TextConfig& config, const std::string& relative_name);

std::string_view weight_group_name(WeightGroup group);

}  // namespace g4

namespace g4 {

struct ParameterCounts {
  std::int64_t total = 0;                 // every text-model tensor, embeddings included, buffers excluded
  std::int64_t active_per_token = 0;      // total minus the experts a token does not visit: (1 - k/E) of them
  std::int64_t embeddings = 0;            // embed_tokens (+ the untied head)
  std::int64_t per_layer_embeddings = 0;  // the PLE lookup table
  std::int64_t experts = 0;               // all routed-expert weights
};

ParameterCounts count_parameters(const TextConfig& config);

}  // namespace g4
