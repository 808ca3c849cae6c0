#include "ops/cpu/rope.h"

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

void rope_apply(float* x, const RopeTable& table, std::int64_t tokens, int heads) {
  const int D = table.head_dim, half = D / 2;
#pragma omp parallel for schedule(static) if (tokens * heads * D > 65536)
  for (std::int64_t t = 0; t < tokens; ++t) {
    const float* c = &table.cos[t * D];
    const float* s = &table.sin[t * D];
    for (int h = 0; h < heads; ++h) {
      float* v = x + (t * heads + h) * D;
      for (int i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * c[i] - b * s[i];
        v[i + half] = b * c[i + half] + a * s[i + half];
      }
    }
  }
}

void rope_backward(float* dx, const RopeTable& table, std::int64_t tokens, int heads) {
  const int D = table.head_dim, half = D / 2;
#pragma omp parallel for schedule(static) if (tokens * heads * D > 65536)
  for (std::int64_t t = 0; t < tokens; ++t) {
    const float* c = &table.cos[t * D];
    const float* s = &table.sin[t * D];
    for (int h = 0; h < heads; ++h) {
      float* v = dx + (t * heads + h) * D;
      for (int i = 0; i < half; ++i) {
        // forward: y1 = a·c - b·s, y2 = b·c + a·s  =>  da = dy1·c + dy2·s, db = -dy1·s + dy2·c
        const float d1 = v[i], d2 = v[i + half];
        v[i] = d1 * c[i] + d2 * s[i + half];
        v[i + half] = -d1 * s[i] + d2 * c[i + half];
      }
    }
  }
}

}  // namespace g4
