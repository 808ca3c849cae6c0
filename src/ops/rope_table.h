// rope_table.h: RoPE's inverse frequencies and cos/sin tables, computed on the host for the positions of a
// batch; backend-neutral (ops.h's rope_ takes a RopeTable, and both backends' kernels read it).
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

}  // namespace g4
