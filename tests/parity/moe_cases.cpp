// moe_cases.cpp: the parity cases of the MoE ops that have CUDA kernels: the Gemma 4 gate forward and
// backward, the token permutation and the grouped experts forward and backward, on fixed-seed inputs with
// masked tokens, dead slots (index -1 or >= E) and experts that get no token. Values the GPU stores in bf16
// are bf16-rounded first (moe_backend.h).
//
// The gate's inputs are drawn so that every token's top-(K+1) logits are at least kLogitGap apart: the device
// rounds the normed router input to bf16 (moves a logit by ~1e-3, under 0.03 at worst), so the chosen experts
// and their order are the same on every backend and the indices can be compared exactly.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "parity/case_util.h"

namespace g4::parity {
namespace {

constexpr double kLogitGap = 0.05;
constexpr const char* kBf16 =
    "the device keeps activations in bf16 (2^-9 per rounding, chained through two GEMMs and gelu': a few "
    "1e-3; tests/cuda/moe_parity.cpp)";
constexpr const char* kRouter =
    "fp32 router, but the device rounds the normed input and the weights to bf16 as NeMo does (~1e-3)";

std::vector<float> bf16_values(std::size_t n, std::mt19937& rng, float stddev) {
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = round_to_bf16(dist(rng));
  return v;
}

// The token's logits as ops/cpu/moe_gate.cpp computes them, in double.
std::vector<double> gate_logits(const GateInputs& in, const float* x) {
  const auto H = static_cast<std::size_t>(in.hidden);
  double ss = 0;
  for (std::size_t h = 0; h < H; ++h) ss += static_cast<double>(x[h]) * x[h];
  const double inv = 1.0 / std::sqrt(ss / static_cast<double>(H) + in.eps), root = std::pow(double(H), -0.5);
  std::vector<double> logits(static_cast<std::size_t>(in.experts), 0.0);
  for (std::size_t e = 0; e < logits.size(); ++e)
    for (std::size_t h = 0; h < H; ++h) logits[e] += x[h] * inv * in.scale[h] * root * in.proj[e * H + h];
  return logits;
}

bool well_separated(std::vector<double> logits, std::int64_t top_k) {
  std::sort(logits.begin(), logits.end(), std::greater<>());
  for (std::int64_t k = 0; k < top_k && k + 1 < static_cast<std::int64_t>(logits.size()); ++k)
    if (logits[k] - logits[k + 1] < kLogitGap) return false;
  return true;
}

GateInputs gate_inputs() {
  GateInputs in;
  in.tokens = 48;
  in.hidden = 128;
  in.experts = 16;
  in.top_k = 4;
  std::mt19937 rng(201);
  in.proj = bf16_values(in.experts * in.hidden, rng, 1.0f);
  in.scale = bf16_values(in.hidden, rng, 0.3f);
  for (float& s : in.scale) s = round_to_bf16(1.0f + s);
  in.d_weights = bf16_values(in.tokens * in.top_k, rng, 1.0f);
  for (std::int64_t t = 0; t < in.tokens; ++t) {
    for (int attempt = 0;; ++attempt) {
      if (attempt == 1000) fail("gate_inputs: no well-separated row for token ", t);
      const std::vector<float> row = bf16_values(in.hidden, rng, 3.0f);
      if (!well_separated(gate_logits(in, row.data()), in.top_k)) continue;
      in.x.insert(in.x.end(), row.begin(), row.end());
      break;
    }
  }
  return in;
}

// Routing with masked tokens (1 in 5), dead slots (-1, and E + 2) and experts in `unused` never chosen.
void random_routing(std::int64_t T, std::int64_t E, std::int64_t K, const std::vector<std::int64_t>& unused,
                    std::mt19937& rng, std::vector<std::int64_t>& indices, std::vector<float>& weights,
                    std::vector<std::uint8_t>& mask) {
  std::vector<std::int64_t> pool;
  for (std::int64_t e = 0; e < E; ++e)
    if (std::find(unused.begin(), unused.end(), e) == unused.end()) pool.push_back(e);
  std::uniform_real_distribution<float> u(0.05f, 1.0f);
  for (std::int64_t t = 0; t < T; ++t) {
    std::shuffle(pool.begin(), pool.end(), rng);
    for (std::int64_t k = 0; k < K; ++k) {
      const std::uint32_t r = rng() % 23;
      indices.push_back(r == 0 ? -1 : r == 1 ? E + 2 : pool[static_cast<std::size_t>(k)]);
      weights.push_back(round_to_bf16(u(rng)));
    }
    mask.push_back(rng() % 5 == 0 ? 0 : 1);
  }
}

PermutationInputs permutation_inputs() {
  PermutationInputs in;
  in.tokens = 300;
  in.experts = 9;
  in.top_k = 3;
  std::mt19937 rng(202);
  random_routing(in.tokens, in.experts, in.top_k, {4}, rng, in.indices, in.weights, in.mask);
  return in;
}

ExpertsInputs experts_inputs() {
  ExpertsInputs in;
  in.tokens = 100;
  in.hidden = 136;
  in.inter = 72;
  in.experts = 10;
  in.top_k = 3;
  std::mt19937 rng(203);
  const auto E = in.experts, H = in.hidden, I = in.inter;
  in.x = bf16_values(in.tokens * H, rng, 1.0f);
  in.gate_up = bf16_values(E * H * 2 * I, rng, 1.0f / std::sqrt(float(H)));
  in.down = bf16_values(E * I * H, rng, 1.0f / std::sqrt(float(I)));
  in.dy = bf16_values(in.tokens * H, rng, 1.0f);
  random_routing(in.tokens, E, in.top_k, {2, 7}, rng, in.indices, in.weights, in.mask);
  return in;
}

Outputs gate_outputs(const GateResult& r, bool backward) {
  if (!backward) return {vector_output("weights", r.weights), integral_output("indices", r.indices)};
  return {integral_output("indices", r.indices), vector_output("dx", r.dx), vector_output("d_proj", r.d_proj),
          vector_output("d_scale", r.d_scale)};
}

}  // namespace

std::vector<OpCase> moe_cases() {
  std::vector<OpCase> c;
  c.push_back({"moe/gate_forward", "", frobenius(1e-2, kRouter),
               [](const Backend& b) { return gate_outputs(b.moe->gate(gate_inputs(), false), false); }});
  c.push_back({"moe/gate_backward", "", frobenius(1e-2, kRouter),
               [](const Backend& b) { return gate_outputs(b.moe->gate(gate_inputs(), true), true); }});
  c.push_back({"moe/permute", "", exact("integer bookkeeping and copied weights"), [](const Backend& b) {
                 const PermutationResult r = b.moe->permute(permutation_inputs());
                 return Outputs{
                     integral_output("offsets", r.offsets), integral_output("row_token", r.row_token),
                     vector_output("row_weight", r.row_weight), integral_output("slot_row", r.slot_row)};
               }});
  c.push_back({"moe/experts_forward", "", frobenius(1e-2, kBf16), [](const Backend& b) {
                 return Outputs{vector_output("y", b.moe->experts(experts_inputs(), false).y)};
               }});
  c.push_back({"moe/experts_backward", "", frobenius(1e-2, kBf16), [](const Backend& b) {
                 const ExpertsResult r = b.moe->experts(experts_inputs(), true);
                 return Outputs{vector_output("dx", r.dx), vector_output("d_weights", r.d_weights),
                                vector_output("d_gate_up", r.d_gate_up), vector_output("d_down", r.d_down)};
               }});
  return c;
}

}  // namespace g4::parity
