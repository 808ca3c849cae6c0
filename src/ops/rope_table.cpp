#include "ops/rope_table.h"

#include <cmath>

namespace g4 {

std::vector<float> rope_inv_freq(const RopeFrequencies& rope) {
  const int half = rope.head_dim / 2;
  std::vector<float> inv(half, 0.0f);
  const float dim = static_cast<float>(rope.head_dim);
  const float theta = static_cast<float>(rope.theta);
  for (int i = 0; i < rope.rotated_pairs && i < half; ++i) {
    const float exponent = static_cast<float>(2 * i) / dim;
    inv[i] = 1.0f / std::pow(theta, exponent);
  }
  if (rope.factor != 1.0)
    for (float& f : inv) f = static_cast<float>(f / static_cast<float>(rope.factor));
  return inv;
}

RopeTable rope_table(const std::vector<float>& inv_freq, const std::int64_t* positions, std::int64_t count) {
  RopeTable t;
  const int half = static_cast<int>(inv_freq.size());
  t.head_dim = 2 * half;
  t.cos.resize(static_cast<std::size_t>(count) * t.head_dim);
  t.sin.resize(t.cos.size());
  for (std::int64_t p = 0; p < count; ++p) {
    for (int i = 0; i < half; ++i) {
      const double angle = static_cast<double>(positions[p]) * static_cast<double>(inv_freq[i]);
      const float c = static_cast<float>(std::cos(angle)), s = static_cast<float>(std::sin(angle));
      t.cos[p * t.head_dim + i] = t.cos[p * t.head_dim + i + half] = c;
      t.sin[p * t.head_dim + i] = t.sin[p * t.head_dim + i + half] = s;
    }
  }
  return t;
}

}  // namespace g4
