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
#include <optional>
#include <vector>

#include "data/generation_config.h"
#include "generate/engine.h"
#include "model/gemma4_model.h"

namespace g4 {

// What a command line or a request sets; unset fields fall back to the checkpoint's generation_config.json.
struct GenerationOverrides {
  std::int64_t max_new_tokens = 32, min_new_tokens = 0;
  std::optional<double> temperature, top_p, min_p, repetition_penalty;
  std::optional<std::int64_t> top_k;
  std::uint64_t seed = 0;
  bool ignore_eos = false;
};

// The parameters of a generation: the overrides, else the checkpoint's defaults, else transformers' (greedy;
// when sampling temperature 1, top_k 50, top_p 1). A temperature of 0 forces greedy decoding and a positive
// one sampling (where transformers would warn and stay greedy without do_sample: whoever names a temperature
// wants it used).
GenerationParams resolve_generation_params(const GenerationDefaults& defaults,
                                           const GenerationOverrides& overrides);

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
