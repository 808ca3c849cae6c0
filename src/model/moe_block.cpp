#include "model/moe_block.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/profile.h"
#include "ops/cpu/gelu.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/rms_norm.h"

namespace g4 {

namespace {

float inv_sqrt(std::int64_t n) {
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(n)));
}

// (token, slot) pairs grouped by expert, in token order within an expert.
std::vector<std::vector<std::int64_t>> slots_by_expert(const Routing& routing, std::int64_t E) {
  std::vector<std::vector<std::int64_t>> slots(static_cast<std::size_t>(E));
  for (std::size_t i = 0; i < routing.indices.size(); ++i)
    slots[routing.indices[i]].push_back(static_cast<std::int64_t>(i));
  return slots;
}

}  // namespace

Routing router_forward(const MoeWeights& w, const Tensor& r, int top_k, float eps) {
  ScopedPhase phase("router");
  const std::int64_t T = r.dim(0), H = r.dim(1), E = w.router_proj.dim(0);
  Routing out;
  out.top_k = top_k;
  out.scaled_input = Tensor(DType::f32, {T, H});
  float* zp = out.scaled_input.f32();
  rms_norm_forward(r.f32(), nullptr, zp, T, H, eps);
  const float root = inv_sqrt(H);
  const float* scale = w.router_scale.f32();
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t h = 0; h < H; ++h) zp[t * H + h] = zp[t * H + h] * scale[h] * root;
  Tensor logits(DType::f32, {T, E});
  linear_forward(zp, w.router_proj.f32(), logits.f32(), T, E, H);

  out.probs = Tensor(DType::f32, {T, E});
  out.indices.resize(static_cast<std::size_t>(T) * top_k);
  out.weights.resize(out.indices.size());
  out.renormed.resize(out.indices.size());
  out.kept_mass.resize(static_cast<std::size_t>(T));
  const float* per_expert = w.per_expert_scale.f32();
#pragma omp parallel
  {
    std::vector<int> order(static_cast<std::size_t>(E));
#pragma omp for schedule(static)
    for (std::int64_t t = 0; t < T; ++t) {
      const float* l = logits.f32() + t * E;
      float* p = out.probs.f32() + t * E;
      const double mx = *std::max_element(l, l + E);
      double sum = 0;
      for (std::int64_t e = 0; e < E; ++e) sum += std::exp(l[e] - mx);
      for (std::int64_t e = 0; e < E; ++e) p[e] = static_cast<float>(std::exp(l[e] - mx) / sum);
      std::iota(order.begin(), order.end(), 0);
      // Descending probability; ties keep the lower expert id first.
      std::partial_sort(order.begin(), order.begin() + top_k, order.end(),
                        [&](int a, int b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
      double kept = 0;
      for (int j = 0; j < top_k; ++j) kept += p[order[j]];
      out.kept_mass[t] = static_cast<float>(kept);
      for (int j = 0; j < top_k; ++j) {
        const int e = order[j];
        out.indices[t * top_k + j] = e;
        out.renormed[t * top_k + j] = static_cast<float>(p[e] / kept);
        out.weights[t * top_k + j] = static_cast<float>(p[e] / kept * per_expert[e]);
      }
    }
  }
  return out;
}

Tensor router_backward(const MoeWeights& w, const Tensor& r, const Routing& routing,
                       const std::vector<float>& dweights, float eps, MoeWeights& g) {
  const std::int64_t T = r.dim(0), H = r.dim(1), E = w.router_proj.dim(0);
  const int k = routing.top_k;
  const float* per_expert = w.per_expert_scale.f32();
  Tensor dlogits(DType::f32, {T, E});
  for (std::int64_t t = 0; t < T; ++t) {
    // w_j = q_j · s[e_j], q_j = p_j / P (P = kept mass): dq_j = dw_j · s[e_j]; ds[e_j] += dw_j · q_j;
    // dp_j = (dq_j - Σ_i dq_i q_i) / P on the selected experts; then the softmax backward over all E.
    double dot_q = 0;
    std::vector<double> dq(static_cast<std::size_t>(k));
    for (int j = 0; j < k; ++j) {
      const std::int64_t slot = t * k + j;
      const int e = routing.indices[slot];
      dq[j] = static_cast<double>(dweights[slot]) * per_expert[e];
      g.per_expert_scale.f32()[e] += dweights[slot] * routing.renormed[slot];
      dot_q += dq[j] * routing.renormed[slot];
    }
    const float* p = routing.probs.f32() + t * E;
    std::vector<double> dp(static_cast<std::size_t>(E), 0.0);
    double dot_p = 0;
    for (int j = 0; j < k; ++j) {
      const int e = routing.indices[t * k + j];
      dp[e] = (dq[j] - dot_q) / routing.kept_mass[t];
      dot_p += dp[e] * p[e];
    }
    for (std::int64_t e = 0; e < E; ++e)
      dlogits.f32()[t * E + e] = static_cast<float>(p[e] * (dp[e] - dot_p));
  }
  matmul_tn(dlogits.f32(), routing.scaled_input.f32(), g.router_proj.f32(), E, H, T, true);
  Tensor dz(DType::f32, {T, H});
  matmul_nn(dlogits.f32(), w.router_proj.f32(), dz.f32(), T, H, E);
  // z2 = n · scale · root with n = rms_norm_noscale(r): dscale += Σ_t dz2 · n · root; dn = dz2 · scale ·
  // root.
  const float root = inv_sqrt(H);
  const float* scale = w.router_scale.f32();
  Tensor n(DType::f32, {T, H});
  rms_norm_forward(r.f32(), nullptr, n.f32(), T, H, eps);
  std::vector<double> dscale(static_cast<std::size_t>(H), 0.0);
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t h = 0; h < H; ++h) {
      const float d = dz.f32()[t * H + h];
      dscale[h] += static_cast<double>(d) * n.f32()[t * H + h] * root;
      dz.f32()[t * H + h] = d * scale[h] * root;
    }
  }
  for (std::int64_t h = 0; h < H; ++h) g.router_scale.f32()[h] += static_cast<float>(dscale[h]);
  Tensor dr(DType::f32, {T, H});
  rms_norm_backward(r.f32(), nullptr, dz.f32(), dr.f32(), nullptr, T, H, eps);
  return dr;
}

Tensor experts_forward(const MoeWeights& w, const Tensor& xe, const Routing& routing) {
  ScopedPhase phase("experts");
  const std::int64_t T = xe.dim(0), H = xe.dim(1);
  const std::int64_t E = w.gate_up_proj.dim(0), I = w.gate_up_proj.dim(1) / 2;
  const int k = routing.top_k;
  const auto slots = slots_by_expert(routing, E);
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

Tensor experts_backward(const MoeWeights& w, const Tensor& xe, const Routing& routing, const Tensor& dout,
                        std::vector<float>& dweights, MoeWeights& g) {
  const std::int64_t T = xe.dim(0), H = xe.dim(1);
  const std::int64_t E = w.gate_up_proj.dim(0), I = w.gate_up_proj.dim(1) / 2;
  const int k = routing.top_k;
  const auto slots = slots_by_expert(routing, E);
  dweights.assign(routing.indices.size(), 0.0f);
  Tensor dxe(DType::f32, {T, H});
  std::vector<float> x, gu, act, y, dy, dact, dgu, dx;
  for (std::int64_t e = 0; e < E; ++e) {
    const auto& s = slots[e];
    const std::int64_t n = static_cast<std::int64_t>(s.size());
    if (n == 0) continue;
    const float* w_gu = w.gate_up_proj.f32() + e * 2 * I * H;
    const float* w_d = w.down_proj.f32() + e * H * I;
    x.resize(n * H);
    for (std::int64_t i = 0; i < n; ++i) std::copy_n(xe.f32() + (s[i] / k) * H, H, &x[i * H]);
    gu.resize(n * 2 * I);
    linear_forward(x.data(), w_gu, gu.data(), n, 2 * I, H);
    act.resize(n * I);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t c = 0; c < I; ++c)
        act[i * I + c] = gelu_tanh(gu[i * 2 * I + c]) * gu[i * 2 * I + I + c];
    y.resize(n * H);
    linear_forward(act.data(), w_d, y.data(), n, H, I);
    // out_t += w · y  =>  dw = <y, dout_t>,  dy = w · dout_t
    dy.resize(n * H);
    for (std::int64_t i = 0; i < n; ++i) {
      const float* d = dout.f32() + (s[i] / k) * H;
      double dot = 0;
      for (std::int64_t h = 0; h < H; ++h) {
        dot += static_cast<double>(y[i * H + h]) * d[h];
        dy[i * H + h] = routing.weights[s[i]] * d[h];
      }
      dweights[s[i]] = static_cast<float>(dot);
    }
    matmul_tn(dy.data(), act.data(), g.down_proj.f32() + e * H * I, H, I, n, true);
    dact.resize(n * I);
    matmul_nn(dy.data(), w_d, dact.data(), n, I, H);
    dgu.resize(n * 2 * I);
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t c = 0; c < I; ++c) {
        const float gate = gu[i * 2 * I + c], up = gu[i * 2 * I + I + c], da = dact[i * I + c];
        dgu[i * 2 * I + c] = da * up * gelu_tanh_grad(gate);
        dgu[i * 2 * I + I + c] = da * gelu_tanh(gate);
      }
    }
    matmul_tn(dgu.data(), x.data(), g.gate_up_proj.f32() + e * 2 * I * H, 2 * I, H, n, true);
    dx.resize(n * H);
    matmul_nn(dgu.data(), w_gu, dx.data(), n, H, 2 * I);
    for (std::int64_t i = 0; i < n; ++i) {
      float* o = dxe.f32() + (s[i] / k) * H;
      for (std::int64_t h = 0; h < H; ++h) o[h] += dx[i * H + h];
    }
  }
  return dxe;
}

}  // namespace g4
