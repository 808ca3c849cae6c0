#include "ops/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace g4 {

void attention_forward(const float* q, const float* k, const float* v, const std::uint8_t* mask, float* out,
                       std::int64_t S, int num_q_heads, int num_kv_heads, int head_dim, float scaling) {
  const int group = num_q_heads / num_kv_heads;
  const std::int64_t D = head_dim;
#pragma omp parallel
  {
    std::vector<double> scores(static_cast<std::size_t>(S));
    std::vector<double> acc(static_cast<std::size_t>(D));
#pragma omp for collapse(2) schedule(static)
    for (std::int64_t i = 0; i < S; ++i) {
      for (int h = 0; h < num_q_heads; ++h) {
        const int kvh = h / group;
        const float* qi = q + (i * num_q_heads + h) * D;
        double max_score = -INFINITY;
        for (std::int64_t j = 0; j < S; ++j) {
          if (!mask[i * S + j]) continue;
          const float* kj = k + (j * num_kv_heads + kvh) * D;
          double dot = 0;
          for (std::int64_t d = 0; d < D; ++d) dot += static_cast<double>(qi[d]) * kj[d];
          scores[j] = dot * scaling;
          max_score = std::max(max_score, scores[j]);
        }
        std::fill(acc.begin(), acc.end(), 0.0);
        float* oi = out + (i * num_q_heads + h) * D;
        if (max_score == -INFINITY) {  // no visible key
          std::fill(oi, oi + D, 0.0f);
          continue;
        }
        double denom = 0;
        for (std::int64_t j = 0; j < S; ++j) {
          if (!mask[i * S + j]) continue;
          const double p = std::exp(scores[j] - max_score);
          denom += p;
          const float* vj = v + (j * num_kv_heads + kvh) * D;
          for (std::int64_t d = 0; d < D; ++d) acc[d] += p * vj[d];
        }
        for (std::int64_t d = 0; d < D; ++d) oi[d] = static_cast<float>(acc[d] / denom);
      }
    }
  }
}

}  // namespace g4
