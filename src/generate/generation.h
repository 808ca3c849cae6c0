// generation.h: the generation loop: prompts in, new tokens out, with the KV cache of generate/kv_cache.h.
//
// Each prompt is prefilled on its own in chunks of `prefill_chunk` tokens (so prompts longer than the sliding
// window work, and no chunk's activations outgrow memory); then all unfinished rows decode together, one
// token per row and step. A row stops after max_new_tokens, or after a stop token (which it keeps, as
// transformers' generate does) once min_new_tokens are out; stop tokens cannot come earlier. Each row draws
// from its own generator seeded by (seed, row), so a row's tokens do not depend on the other rows.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "core/allocator.h"
#include "generate/sampling.h"
#include "model/gemma4_model.h"

namespace g4 {

struct GenerationParams {
  std::int64_t max_new_tokens = 32;
  std::int64_t min_new_tokens = 0;
  std::vector<std::int64_t> stop_ids;  // end-of-sequence tokens (generation_config.json's eos_token_id)
  SamplingParams sampling;
  std::uint64_t seed = 0;
  std::int64_t prefill_chunk = 512;
};

// Called with each new token as it is chosen (row index, token).
using TokenCallback = std::function<void(std::size_t row, std::int64_t token)>;

// The new tokens of each prompt. The model's weights live on `device`'s device in `dtype` (cli moves them);
// the KV cache goes there too. Prompts must be non-empty and their ids inside the vocabulary (g4::Error).
std::vector<std::vector<std::int64_t>> generate(const Gemma4Model& model,
                                                const std::vector<std::vector<std::int64_t>>& prompts,
                                                const GenerationParams& params, Allocator& device,
                                                DType dtype, const TokenCallback& on_token = {});

}  // namespace g4
