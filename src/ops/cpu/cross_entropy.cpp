#include "ops/cpu/cross_entropy.h"

#include <algorithm>
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

void softcap_backward(const float* capped, float* grad, std::int64_t count, float cap) {
#pragma omp parallel for schedule(static) if (count > 65536)
  for (std::int64_t i = 0; i < count; ++i) {
    const double t = static_cast<double>(capped[i]) / cap;
    grad[i] = static_cast<float>(grad[i] * (1.0 - t * t));
  }
}

void causal_lm_loss_backward(const float* logits, const std::int64_t* labels, float* dlogits, std::int64_t B,
                             std::int64_t S, std::int64_t V, double normaliser) {
#pragma omp parallel for collapse(2) schedule(static)
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t t = 0; t < S; ++t) {
      float* d = dlogits + (b * S + t) * V;
      const std::int64_t label = t + 1 < S ? labels[b * S + t + 1] : kIgnoreIndex;
      if (label == kIgnoreIndex) {
        std::fill(d, d + V, 0.0f);
        continue;
      }
      const float* row = logits + (b * S + t) * V;
      double max_logit = row[0];
      for (std::int64_t j = 1; j < V; ++j) max_logit = std::max(max_logit, static_cast<double>(row[j]));
      double denom = 0;
      for (std::int64_t j = 0; j < V; ++j) denom += std::exp(row[j] - max_logit);
      for (std::int64_t j = 0; j < V; ++j)
        d[j] = static_cast<float>((std::exp(row[j] - max_logit) / denom - (j == label ? 1.0 : 0.0)) /
                                  normaliser);
    }
  }
}

}  // namespace g4
