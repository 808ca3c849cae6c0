// generation.h: generation of a fixed set of prompts (`g4moe generate`, the training sample), through the
// continuous-batching engine of engine.h with one slot per prompt.
//
// Each prompt is prefilled on its own in chunks of `prefill_chunk` tokens (so prompts longer than the sliding
// window work, and no chunk's activations outgrow memory); unfinished rows decode together, one token per row
// and step. A row stops after max_new_tokens, or after a stop token (which it keeps, as transformers'
// generate does) once min_new_tokens are out; stop tokens cannot come earlier. Row r draws from generator
// (seed, r), so a row's tokens do not depend on the other rows.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "core/allocator.h"
#include "generate/engine.h"
#include "model/gemma4_model.h"

namespace g4 {

// Called with each new token as it is chosen (row index, token).
using TokenCallback = std::function<void(std::size_t row, std::int64_t token)>;

// The new tokens of each prompt. The model's weights live on `device`'s device in `dtype` (cli moves them);
// the KV cache goes there too. Prompts must be non-empty and their ids inside the vocabulary (g4::Error).
std::vector<std::vector<std::int64_t>> generate(const Gemma4Model& model,
                                                const std::vector<std::vector<std::int64_t>>& prompts,
                                                const GenerationParams& params, Allocator& device,
                                                DType dtype, const TokenCallback& on_token = {},
                                                std::int64_t prefill_chunk = 512);

}  // namespace g4
