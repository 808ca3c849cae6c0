// rope.h: rotary position embeddings in the rotate-half (NeoX) layout: dim j pairs with j + D/2.
//
// inv_freq follows transformers 5.17 exactly: computed in fp32 as 1 / theta^(2i / head_dim) for the
// rotated pairs (proportional RoPE: the first int(partial·D/2) pairs, the exponent's denominator being the
// full head dim) and 0 for the rest, then divided by `factor`. Angles and cos/sin are computed in double.
#pragma once

#include <cstdint>
#include <vector>

#include "ops/rope_table.h"

namespace g4 {

void rope_apply(float* x, const RopeTable& table, std::int64_t tokens, int heads);

// Backward of rope_apply, in place on the gradient dx [T, heads, head_dim] (the rotation's transpose).
void rope_backward(float* dx, const RopeTable& table, std::int64_t tokens, int heads);

}  // namespace g4
