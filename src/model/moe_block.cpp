#include "model/moe_block.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/profile.h"
#include "ops/cpu/gelu.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/rms_norm.h"

namespace g4 {

Routing router_forward(const MoeWeights& w, const Tensor& r, int top_k, float eps) {
  ScopedPhase phase("router");
  const std::int64_t T = r.dim(0), H = r.dim(1), E = w.router_proj.dim(0);
  Tensor z(DType::f32, {T, H});
  rms_norm_forward(r.f32(), nullptr, z.f32(), T, H, eps);
  const float root = static_cast<float>(1.0 / std::sqrt(static_cast<double>(H)));
  float* zp = z.f32();
  const float* scale = w.router_scale.f32();
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t h = 0; h < H; ++h) zp[t * H + h] = zp[t * H + h] * scale[h] * root;
  Tensor logits(DType::f32, {T, E});
  linear_forward(z.f32(), w.router_proj.f32(), logits.f32(), T, E, H);

  Routing out;
  out.top_k = top_k;
  out.indices.resize(static_cast<std::size_t>(T) * top_k);
  out.weights.resize(out.indices.size());
  const float* per_expert = w.per_expert_scale.f32();
#pragma omp parallel
  {
    std::vector<double> p(static_cast<std::size_t>(E));
    std::vector<int> order(static_cast<std::size_t>(E));
#pragma omp for schedule(static)
    for (std::int64_t t = 0; t < T; ++t) {
      const float* l = logits.f32() + t * E;
      const double mx = *std::max_element(l, l + E);
      double sum = 0;
      for (std::int64_t e = 0; e < E; ++e) sum += (p[e] = std::exp(l[e] - mx));
      for (std::int64_t e = 0; e < E; ++e) p[e] /= sum;
      std::iota(order.begin(), order.end(), 0);
      // Descending probability; ties keep the lower expert id first.
      std::partial_sort(order.begin(), order.begin() + top_k, order.end(),
                        [&](int a, int b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
      double kept = 0;
      for (int j = 0; j < top_k; ++j) kept += p[order[j]];
      for (int j = 0; j < top_k; ++j) {
        const int e = order[j];
        out.indices[t * top_k + j] = e;
        out.weights[t * top_k + j] = static_cast<float>(p[e] / kept * per_expert[e]);
      }
    }
  }
  return out;
}

Tensor experts_forward(const MoeWeights& w, const Tensor& xe, const Routing& routing) {
  ScopedPhase phase("experts");
  const std::int64_t T = xe.dim(0), H = xe.dim(1);
  const std::int64_t E = w.gate_up_proj.dim(0), I = w.gate_up_proj.dim(1) / 2;
  const int k = routing.top_k;
  // Group (token, slot) pairs by expert, in token order within an expert.
  std::vector<std::vector<std::int64_t>> slots(static_cast<std::size_t>(E));
  for (std::int64_t i = 0; i < T * k; ++i) slots[routing.indices[i]].push_back(i);
  Tensor out(DType::f32, {T, H});
  std::vector<float> x, gu, act, y;
  for (std::int64_t e = 0; e < E; ++e) {
    const auto& s = slots[e];
    const std::int64_t n = static_cast<std::int64_t>(s.size());
    if (n == 0) continue;
    x.resize(n * H);
    for (std::int64_t i = 0; i < n; ++i) std::copy_n(xe.f32() + (s[i] / k) * H, H, &x[i * H]);
    gu.resize(n * 2 * I);
    linear_forward(x.data(), w.gate_up_proj.f32() + e * 2 * I * H, gu.data(), n, 2 * I, H);
    act.resize(n * I);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t c = 0; c < I; ++c)
        act[i * I + c] = gelu_tanh(gu[i * 2 * I + c]) * gu[i * 2 * I + I + c];
    y.resize(n * H);
    linear_forward(act.data(), w.down_proj.f32() + e * H * I, y.data(), n, H, I);
    for (std::int64_t i = 0; i < n; ++i) {
      const float weight = routing.weights[s[i]];
      float* o = out.f32() + (s[i] / k) * H;
      for (std::int64_t h = 0; h < H; ++h) o[h] += weight * y[i * H + h];
    }
  }
  return out;
}

}  // namespace g4
