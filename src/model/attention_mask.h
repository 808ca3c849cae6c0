// attention_mask.h: which keys each query may see, per batch row and layer kind, as transformers 5.17 builds
// it (hf_transformers_gemma4.md §4):
//   causal: j <= i;  sliding (window W): also j > i - W (W tokens including the query itself);
//   a 2-D attention_mask masks keys only;
//   packed sequences (no attention_mask, explicit position_ids): a new segment starts wherever
//   pos[t] - pos[t-1] != 1, and a query sees only keys of its own segment.
// Indices i, j are positions in the row (not position ids).
#pragma once

#include <cstdint>
#include <vector>

#include "core/batch.h"

namespace g4 {

// mask [S, S] for row b; window 0 = unlimited.
std::vector<std::uint8_t> build_attention_mask(const Batch& batch, std::int64_t row, int window);

}  // namespace g4
