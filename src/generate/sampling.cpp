#include "generate/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace g4 {

namespace {

constexpr float kFiltered = -std::numeric_limits<float>::infinity();

// softmax in double (filtered entries get 0)
std::vector<double> probabilities(std::span<const float> logits) {
  const float top = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double sum = 0;
  for (std::size_t i = 0; i < logits.size(); ++i) sum += p[i] = std::exp(double{logits[i]} - double{top});
  for (double& x : p) x /= sum;
  return p;
}

void top_k_(std::span<float> logits, std::int64_t k) {
  if (k <= 0 || k >= static_cast<std::int64_t>(logits.size())) return;
  std::vector<float> sorted(logits.begin(), logits.end());
  std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end(), std::greater<>());
  const float kth = sorted[static_cast<std::size_t>(k - 1)];
  for (float& x : logits)
    if (x < kth) x = kFiltered;  // ties with the k-th are kept
}

// Removes the least likely tokens whose cumulative probability (ascending) stays <= 1 - top_p; the most
// likely token always stays.
void top_p_(std::span<float> logits, double top_p) {
  if (top_p >= 1.0) return;
  const std::vector<double> p = probabilities(logits);
  std::vector<std::size_t> order(logits.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return logits[a] < logits[b]; });
  double cumulative = 0;
  for (std::size_t i = 0; i + 1 < order.size(); ++i) {
    cumulative += p[order[i]];
    if (cumulative <= 1.0 - top_p) logits[order[i]] = kFiltered;
  }
}

void min_p_(std::span<float> logits, double min_p) {
  if (min_p <= 0.0) return;
  const std::vector<double> p = probabilities(logits);
  const double threshold = min_p * *std::max_element(p.begin(), p.end());
  const std::size_t best = static_cast<std::size_t>(std::max_element(p.begin(), p.end()) - p.begin());
  for (std::size_t i = 0; i < p.size(); ++i)
    if (p[i] < threshold && i != best) logits[i] = kFiltered;
}

}  // namespace

void process_logits(std::span<float> logits, std::span<const std::int64_t> seen,
                    std::span<const std::int64_t> suppressed, const SamplingParams& s) {
  const auto V = static_cast<std::int64_t>(logits.size());
  if (s.repetition_penalty != 1.0) {
    std::vector<bool> done(logits.size(), false);  // a token seen twice is penalised once
    const float penalty = static_cast<float>(s.repetition_penalty);
    for (const std::int64_t t : seen) {
      if (t < 0 || t >= V || done[static_cast<std::size_t>(t)]) continue;
      done[static_cast<std::size_t>(t)] = true;
      float& x = logits[static_cast<std::size_t>(t)];
      x = x < 0 ? x * penalty : x / penalty;
    }
  }
  for (const std::int64_t t : suppressed)
    if (t >= 0 && t < V) logits[static_cast<std::size_t>(t)] = kFiltered;
  if (s.greedy) return;
  if (s.temperature != 1.0) {
    const float temperature = static_cast<float>(s.temperature);
    for (float& x : logits) x /= temperature;
  }
  top_k_(logits, s.top_k);
  top_p_(logits, s.top_p);
  min_p_(logits, s.min_p);
}

std::int64_t pick_token(std::span<const float> logits, const SamplingParams& s, std::mt19937_64& rng) {
  if (s.greedy) return std::max_element(logits.begin(), logits.end()) - logits.begin();
  const std::vector<double> p = probabilities(logits);
  const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  double cumulative = 0;
  std::int64_t last = 0;
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0) continue;
    cumulative += p[i];
    last = static_cast<std::int64_t>(i);
    if (u < cumulative) return last;
  }
  return last;  // rounding left u above the sum
}

}  // namespace g4
