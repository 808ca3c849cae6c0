#include "ops/cpu/rope.h"

#include <cmath>

namespace g4 {

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
