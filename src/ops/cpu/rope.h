// rope.h: rotary position embeddings in the rotate-half (NeoX) layout: dim j pairs with j + D/2.
//
// inv_freq follows transformers 5.17 exactly: computed in fp32 as 1 / theta^(2i / head_dim) for the
// rotated pairs (proportional RoPE: the first int(partial·D/2) pairs, the exponent's denominator being the
// full head dim) and 0 for the rest, then divided by `factor`. Angles and cos/sin are computed in double.
#pragma once

#include <cstdint>
#include <vector>

namespace g4 {

// What inv_freq depends on (the model resolves it from config.json's rope parameters per attention kind).
struct RopeFrequencies {
  double theta = 10000.0;
  int head_dim = 0;       // the exponent's denominator
  int rotated_pairs = 0;  // inv_freq entries that are non-zero; the other head_dim/2 - this are 0
  double factor = 1.0;    // divides inv_freq
};
std::vector<float> rope_inv_freq(const RopeFrequencies& rope);  // head_dim / 2 entries

// cos/sin tables [T, head_dim] for the given positions (concat(angles, angles) layout).
struct RopeTable {
  int head_dim = 0;
  std::vector<float> cos, sin;
};
RopeTable rope_table(const std::vector<float>& inv_freq, const std::int64_t* positions, std::int64_t count);

// In place on x [T, heads, head_dim]: x = x·cos + rotate_half(x)·sin, with rotate_half([a, b]) = [-b, a].
void rope_apply(float* x, const RopeTable& table, std::int64_t tokens, int heads);

// Backward of rope_apply, in place on the gradient dx [T, heads, head_dim] (the rotation's transpose).
void rope_backward(float* dx, const RopeTable& table, std::int64_t tokens, int heads);

}  // namespace g4
