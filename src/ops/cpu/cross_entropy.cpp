#include "ops/cpu/cross_entropy.h"

#include <algorithm>
#include <cmath>

namespace g4 {

void softcap_forward(float* logits, std::int64_t count, float cap) {
#pragma omp parallel for schedule(static) if (count > 65536)
  for (std::int64_t i = 0; i < count; ++i)
    logits[i] = static_cast<float>(std::tanh(static_cast<double>(logits[i]) / cap) * cap);
}

namespace {

// -log softmax(row)[label], statistics in double.
double row_loss(const float* row, std::int64_t V, std::int64_t label) {
  double max_logit = row[0];
  for (std::int64_t j = 1; j < V; ++j) max_logit = std::max(max_logit, static_cast<double>(row[j]));
  double denom = 0;
  for (std::int64_t j = 0; j < V; ++j) denom += std::exp(row[j] - max_logit);
  return std::log(denom) + max_logit - row[label];
}

// d = (softmax(row) - onehot(label)) / normaliser, or zeros for an ignored label.
void row_grad(const float* row, std::int64_t V, std::int64_t label, double normaliser, float* d) {
  if (label == kIgnoreIndex) {
    std::fill(d, d + V, 0.0f);
    return;
  }
  double max_logit = row[0];
  for (std::int64_t j = 1; j < V; ++j) max_logit = std::max(max_logit, static_cast<double>(row[j]));
  double denom = 0;
  for (std::int64_t j = 0; j < V; ++j) denom += std::exp(row[j] - max_logit);
  for (std::int64_t j = 0; j < V; ++j)
    d[j] = static_cast<float>((std::exp(row[j] - max_logit) / denom - (j == label ? 1.0 : 0.0)) / normaliser);
}

}  // namespace

LossResult token_loss(const float* logits, const std::int64_t* targets, std::int64_t N, std::int64_t V) {
  double sum = 0;
  std::int64_t count = 0;
#pragma omp parallel for reduction(+ : sum, count) schedule(static)
  for (std::int64_t p = 0; p < N; ++p) {
    if (targets[p] == kIgnoreIndex) continue;
    sum += row_loss(logits + p * V, V, targets[p]);
    count += 1;
  }
  return {sum, count};
}

void token_loss_backward(const float* logits, const std::int64_t* targets, float* dlogits, std::int64_t N,
                         std::int64_t V, double normaliser) {
#pragma omp parallel for schedule(static)
  for (std::int64_t p = 0; p < N; ++p) row_grad(logits + p * V, V, targets[p], normaliser, dlogits + p * V);
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
      sum += row_loss(logits + (b * S + t) * V, V, label);
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
      const std::int64_t label = t + 1 < S ? labels[b * S + t + 1] : kIgnoreIndex;
      row_grad(logits + (b * S + t) * V, V, label, normaliser, dlogits + (b * S + t) * V);
    }
  }
}

}  // namespace g4
