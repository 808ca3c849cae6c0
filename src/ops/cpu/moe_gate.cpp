#include "ops/cpu/moe_gate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "ops/cpu/grouped_gemm.h"

namespace g4 {

namespace {

void check_config(const Gemma4GateConfig& cfg) {
  check(cfg.hidden > 0 && cfg.num_experts > 0, "gemma4 gate: hidden size and expert count must be positive");
  check(cfg.top_k > 0 && cfg.top_k <= cfg.num_experts, "gemma4 gate: top_k ", cfg.top_k, " is not in [1, ",
        cfg.num_experts, "]");
}

constexpr double kRenormFloor = 1e-20;

}  // namespace

template <class T>
T gemma4_router_root_size(std::int64_t hidden) {
  return static_cast<T>(std::pow(static_cast<double>(hidden), -0.5));
}

template <class T>
void topk_descending(const T* row, std::int64_t n, std::int64_t k, std::int64_t* out) {
  auto key = [&](std::int64_t i) { return std::isnan(row[i]) ? -INFINITY : static_cast<double>(row[i]); };
  auto before = [&](std::int64_t a, std::int64_t b) {
    const double ka = key(a), kb = key(b);
    return ka > kb || (ka == kb && a < b);
  };
  // Insertion into a sorted list of k: k is small (8) compared to n (128).
  std::int64_t filled = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    if (filled == k && !before(i, out[k - 1])) continue;
    std::int64_t pos = filled < k ? filled++ : k - 1;
    while (pos > 0 && before(i, out[pos - 1])) {
      out[pos] = out[pos - 1];
      --pos;
    }
    out[pos] = i;
  }
}

template <class T>
void moe_gate_forward(const Gemma4GateConfig& cfg, const T* x, const T* proj, const T* scale,
                      std::int64_t tokens, T* weights, std::int64_t* indices, Gemma4GateContext<T>* ctx) {
  check_config(cfg);
  const std::int64_t H = cfg.hidden, E = cfg.num_experts, K = cfg.top_k;
  const T root = gemma4_router_root_size<T>(H);
  Gemma4GateContext<T> local;
  Gemma4GateContext<T>& c = ctx ? *ctx : local;
  c.tokens = tokens;
  c.normed.resize(static_cast<std::size_t>(tokens * H));
  c.inv_rms.resize(static_cast<std::size_t>(tokens));
  c.probs.resize(static_cast<std::size_t>(tokens * E));
  c.indices.resize(static_cast<std::size_t>(tokens * K));
  c.topk_sum.resize(static_cast<std::size_t>(tokens));
  std::vector<T> z(static_cast<std::size_t>(tokens * H));
  for (std::int64_t t = 0; t < tokens; ++t) {
    const T* xt = x + t * H;
    double ss = 0;
    for (std::int64_t j = 0; j < H; ++j) ss += static_cast<double>(xt[j]) * xt[j];
    const T ms = static_cast<T>(ss / static_cast<double>(H)) + static_cast<T>(cfg.eps);
    const T inv = static_cast<T>(std::pow(static_cast<double>(ms), -0.5));
    c.inv_rms[t] = inv;
    for (std::int64_t j = 0; j < H; ++j) {
      const T n = xt[j] * inv;
      c.normed[t * H + j] = n;
      z[t * H + j] = (n * scale[j]) * root;
    }
  }
  T* logits = c.probs.data();  // softmax in place
  gemm<T>(false, true, tokens, E, H, z.data(), proj, logits, false);
  for (std::int64_t t = 0; t < tokens; ++t) {
    T* p = logits + t * E;
    T mx = p[0];
    for (std::int64_t e = 1; e < E; ++e) mx = std::max(mx, p[e]);
    double sum = 0;
    for (std::int64_t e = 0; e < E; ++e) {
      p[e] = static_cast<T>(std::exp(static_cast<double>(p[e] - mx)));
      sum += p[e];
    }
    for (std::int64_t e = 0; e < E; ++e) p[e] = static_cast<T>(p[e] / sum);
    std::int64_t* idx = c.indices.data() + t * K;
    topk_descending(p, E, K, idx);
    double s = 0;
    for (std::int64_t k = 0; k < K; ++k) s += p[idx[k]];
    c.topk_sum[t] = static_cast<T>(s);
    const T denom = std::max(static_cast<T>(s), static_cast<T>(kRenormFloor));
    for (std::int64_t k = 0; k < K; ++k) {
      weights[t * K + k] = p[idx[k]] / denom;
      indices[t * K + k] = idx[k];
    }
  }
}

template <class T>
void moe_gate_backward(const Gemma4GateConfig& cfg, const T* proj, const T* scale,
                       const Gemma4GateContext<T>& ctx, const T* dweights, T* dx, T* dscale, T* dproj) {
  check_config(cfg);
  const std::int64_t H = cfg.hidden, E = cfg.num_experts, K = cfg.top_k, tokens = ctx.tokens;
  const T root = gemma4_router_root_size<T>(H);
  std::vector<T> dlogits(static_cast<std::size_t>(tokens * E), T(0));
  for (std::int64_t t = 0; t < tokens; ++t) {
    const T* p = ctx.probs.data() + t * E;
    const std::int64_t* idx = ctx.indices.data() + t * K;
    const T* dw = dweights + t * K;
    const double S = ctx.topk_sum[t];
    const bool floored = S < kRenormFloor;
    const double denom = floored ? kRenormFloor : S;
    double dot = 0;  // Σ_k dw_k · p_k
    for (std::int64_t k = 0; k < K; ++k) dot += static_cast<double>(dw[k]) * p[idx[k]];
    T* dl = dlogits.data() + t * E;
    // dL/dp at the selected experts (stored in dl for now), then the softmax backward over all experts.
    for (std::int64_t k = 0; k < K; ++k)
      dl[idx[k]] += static_cast<T>(dw[k] / denom - (floored ? 0.0 : dot / (denom * denom)));
    double pdp = 0;
    for (std::int64_t e = 0; e < E; ++e) pdp += static_cast<double>(p[e]) * dl[e];
    for (std::int64_t e = 0; e < E; ++e) dl[e] = static_cast<T>(p[e] * (dl[e] - pdp));
  }
  std::vector<T> z(static_cast<std::size_t>(tokens * H)), dz(static_cast<std::size_t>(tokens * H));
  for (std::int64_t t = 0; t < tokens; ++t)
    for (std::int64_t j = 0; j < H; ++j) z[t * H + j] = (ctx.normed[t * H + j] * scale[j]) * root;
  gemm<T>(true, false, E, H, tokens, dlogits.data(), z.data(), dproj, true);  // dproj += dlogitsᵀ·z
  gemm<T>(false, false, tokens, H, E, dlogits.data(), proj, dz.data(), false);
  for (std::int64_t t = 0; t < tokens; ++t) {
    const T* n = ctx.normed.data() + t * H;
    const T* dzt = dz.data() + t * H;
    T* dxt = dx + t * H;
    double dot = 0;
    for (std::int64_t j = 0; j < H; ++j) {
      dscale[j] += dzt[j] * n[j] * root;
      const T dn = dzt[j] * scale[j] * root;
      dxt[j] = dn;
      dot += static_cast<double>(dn) * n[j];
    }
    const T mean = static_cast<T>(dot / static_cast<double>(H));
    const T inv = ctx.inv_rms[t];
    for (std::int64_t j = 0; j < H; ++j) dxt[j] = inv * (dxt[j] - n[j] * mean);
  }
}

template <class T>
void apply_per_expert_scale(const T* per_expert_scale, const std::int64_t* indices, std::int64_t tokens,
                            std::int64_t top_k, T* weights) {
  for (std::int64_t s = 0; s < tokens * top_k; ++s)
    if (indices[s] >= 0) weights[s] *= per_expert_scale[indices[s]];
}

#define G4_INSTANTIATE(T)                                                                                    \
  template T gemma4_router_root_size<T>(std::int64_t);                                                       \
  template void topk_descending<T>(const T*, std::int64_t, std::int64_t, std::int64_t*);                     \
  template void moe_gate_forward<T>(const Gemma4GateConfig&, const T*, const T*, const T*, std::int64_t, T*, \
                                    std::int64_t*, Gemma4GateContext<T>*);                                   \
  template void moe_gate_backward<T>(const Gemma4GateConfig&, const T*, const T*,                            \
                                     const Gemma4GateContext<T>&, const T*, T*, T*, T*);                     \
  template void apply_per_expert_scale<T>(const T*, const std::int64_t*, std::int64_t, std::int64_t, T*);
G4_INSTANTIATE(float)
G4_INSTANTIATE(double)
#undef G4_INSTANTIATE

}  // namespace g4
