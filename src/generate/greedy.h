// greedy.h: greedy decoding without a KV cache (each new token re-runs the forward over the whole sequence):
// simple and exact, meant for the tiny models of demos and tests, not for serving.
#pragma once

#include <cstdint>
#include <vector>

#include "model/gemma4_model.h"

namespace g4 {

// Appends up to `max_new` argmax tokens to `prompt` (stopping after `stop_id` when >= 0); returns the new
// ids.
std::vector<std::int64_t> greedy_generate(const Gemma4Model& model, const std::vector<std::int64_t>& prompt,
                                          std::int64_t max_new, std::int64_t stop_id = -1);

}  // namespace g4
