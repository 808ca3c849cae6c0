#include "ops/cpu/cross_entropy.h"

#include <cmath>

namespace g4 {

void softcap_forward(float* logits, std::int64_t count, float cap) {
#pragma omp parallel for schedule(static) if (count > 65536)
  for (std::int64_t i = 0; i < count; ++i)
    logits[i] = static_cast<float>(std::tanh(static_cast<double>(logits[i]) / cap) * cap);
}

LossResult causal_lm_loss(const float* logits, const std::int64_t* labels, std::int64_t B, std::int64_t S,
                          std::int64_t V) {
  LossResult r;
  double sum = 0;
  std::int64_t count = 0;
#pragma omp parallel for collapse(2) reduction(+ : sum, count) schedule(static)
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t t = 0; t < S - 1; ++t) {
      const std::int64_t label = labels[b * S + t + 1];
      if (label == kIgnoreIndex) continue;
      const float* row = logits + (b * S + t) * V;
      double max_logit = row[0];
      for (std::int64_t j = 1; j < V; ++j) max_logit = std::max(max_logit, static_cast<double>(row[j]));
      double denom = 0;
      for (std::int64_t j = 0; j < V; ++j) denom += std::exp(row[j] - max_logit);
      sum += std::log(denom) + max_logit - row[label];
      count += 1;
    }
  }
  r.loss_sum = sum;
  r.num_tokens = count;
  return r;
}

}  // namespace g4
