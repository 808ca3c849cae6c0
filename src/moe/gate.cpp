#include "moe/gate.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "ops/cpu/grouped_gemm.h"
#include "ops/cpu/moe_gate.h"

namespace g4 {

ScoreFunction score_function_from_name(std::string_view name) {
  if (name == "softmax") return ScoreFunction::softmax;
  if (name == "sigmoid") return ScoreFunction::sigmoid;
  fail("unknown router score function \"", std::string(name), "\" (expected softmax or sigmoid)");
}

namespace {

constexpr double kNormEps = 1e-20;

template <class T>
void softmax_row(const T* in, std::int64_t n, T* out) {
  T mx = in[0];
  for (std::int64_t i = 1; i < n; ++i) mx = std::max(mx, in[i]);
  double sum = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    out[i] = static_cast<T>(std::exp(static_cast<double>(in[i] - mx)));
    sum += out[i];
  }
  for (std::int64_t i = 0; i < n; ++i) out[i] = static_cast<T>(out[i] / sum);
}

template <class T>
T sigmoid(T v) {
  return static_cast<T>(1.0 / (1.0 + std::exp(-static_cast<double>(v))));
}

// grad of y = softmax(x) mapped back: dx = y ⊙ (dy − Σ y·dy), added into dx.
template <class T>
void softmax_backward_add(const T* y, const double* dy, std::int64_t n, T* dx) {
  double dot = 0;
  for (std::int64_t i = 0; i < n; ++i) dot += y[i] * dy[i];
  for (std::int64_t i = 0; i < n; ++i) dx[i] += static_cast<T>(y[i] * (dy[i] - dot));
}

}  // namespace

template <class T>
void gate_forward(const GateConfig& cfg, const T* x, const T* weight, const T* bias, const T* expert_bias,
                  const std::uint8_t* token_mask, std::int64_t tokens, T* weights, std::int64_t* indices,
                  double* aux_loss, GateContext<T>* ctx) {
  const std::int64_t D = cfg.dim, E = cfg.num_experts, K = cfg.top_k;
  check(D > 0 && E > 0 && K > 0 && K <= E, "gate: need dim > 0 and 0 < top_k <= num_experts");
  GateContext<T> local;
  GateContext<T>& c = ctx ? *ctx : local;
  c.tokens = tokens;
  c.scores.resize(static_cast<std::size_t>(tokens * E));
  c.indices.resize(static_cast<std::size_t>(tokens * K));
  c.pre_norm.resize(static_cast<std::size_t>(tokens * K));
  c.norm_sum.assign(static_cast<std::size_t>(tokens), T(0));
  c.valid.assign(static_cast<std::size_t>(tokens), 1);
  if (token_mask)
    for (std::int64_t t = 0; t < tokens; ++t) c.valid[t] = token_mask[t] ? 1 : 0;
  const bool with_aux = cfg.aux_loss_coeff > 0;
  c.full_probs.resize(with_aux ? static_cast<std::size_t>(tokens * E) : 0);

  std::vector<T> logits(static_cast<std::size_t>(tokens * E));
  gemm<T>(false, true, tokens, E, D, x, weight, logits.data(), false);
  std::vector<T> choice(static_cast<std::size_t>(E));
  const bool normalise = cfg.norm_topk_prob && K > 1;
  for (std::int64_t t = 0; t < tokens; ++t) {
    T* l = logits.data() + t * E;
    if (bias)
      for (std::int64_t e = 0; e < E; ++e) l[e] += bias[e];
    T* s = c.scores.data() + t * E;
    if (cfg.score == ScoreFunction::softmax && !cfg.softmax_before_topk)
      std::copy(l, l + E, s);
    else if (cfg.score == ScoreFunction::softmax)
      softmax_row(l, E, s);
    else
      for (std::int64_t e = 0; e < E; ++e) s[e] = sigmoid(l[e]);
    for (std::int64_t e = 0; e < E; ++e) choice[e] = s[e] + (expert_bias ? expert_bias[e] : T(0));
    std::int64_t* idx = c.indices.data() + t * K;
    topk_descending(choice.data(), E, K, idx);
    T* w = c.pre_norm.data() + t * K;
    for (std::int64_t k = 0; k < K; ++k) w[k] = s[idx[k]];
    if (cfg.score == ScoreFunction::softmax && !cfg.softmax_before_topk) softmax_row(w, K, w);
    double sum = 0;
    for (std::int64_t k = 0; k < K; ++k) sum += w[k];
    c.norm_sum[t] = static_cast<T>(sum);
    for (std::int64_t k = 0; k < K; ++k) {
      T v = normalise ? static_cast<T>(w[k] / (static_cast<T>(sum) + static_cast<T>(kNormEps))) : w[k];
      weights[t * K + k] = static_cast<T>(v * static_cast<T>(cfg.route_scale));
      indices[t * K + k] = idx[k];
    }
    if (with_aux) {
      T* fp = c.full_probs.data() + t * E;
      if (cfg.score == ScoreFunction::softmax)
        softmax_row(l, E, fp);
      else
        std::copy(s, s + E, fp);
    }
  }
  if (aux_loss) *aux_loss = 0;
  c.aux_f.assign(with_aux ? static_cast<std::size_t>(E) : 0, 0.0);
  if (with_aux) {
    std::int64_t n_valid = 0;
    for (std::int64_t t = 0; t < tokens; ++t) n_valid += c.valid[t];
    c.t_valid = static_cast<double>(std::max<std::int64_t>(1, n_valid));
    std::vector<double> P(static_cast<std::size_t>(E), 0.0);
    for (std::int64_t t = 0; t < tokens; ++t) {
      if (!c.valid[t]) continue;
      for (std::int64_t k = 0; k < K; ++k) c.aux_f[c.indices[t * K + k]] += 1.0;
      for (std::int64_t e = 0; e < E; ++e) P[e] += c.full_probs[t * E + e];
    }
    double aux = 0;
    for (std::int64_t e = 0; e < E; ++e) {
      c.aux_f[e] = c.aux_f[e] * static_cast<double>(E) / (static_cast<double>(K) * c.t_valid);
      aux += c.aux_f[e] * P[e] / c.t_valid;
    }
    if (aux_loss) *aux_loss = aux;
  }
}

template <class T>
void gate_backward(const GateConfig& cfg, const T* x, const T* weight, const GateContext<T>& ctx,
                   const T* dweights, double aux_loss_grad, T* dx, T* dweight, T* dbias) {
  const std::int64_t D = cfg.dim, E = cfg.num_experts, K = cfg.top_k, tokens = ctx.tokens;
  const bool normalise = cfg.norm_topk_prob && K > 1;
  const bool with_aux = cfg.aux_loss_coeff > 0;
  std::vector<T> dlogits(static_cast<std::size_t>(tokens * E), T(0));
  std::vector<double> dpre(static_cast<std::size_t>(K)), dp(static_cast<std::size_t>(E));
  for (std::int64_t t = 0; t < tokens; ++t) {
    const std::int64_t* idx = ctx.indices.data() + t * K;
    const T* pre = ctx.pre_norm.data() + t * K;
    const T* s = ctx.scores.data() + t * E;
    T* dl = dlogits.data() + t * E;
    double dot = 0;
    for (std::int64_t k = 0; k < K; ++k) {
      dpre[k] = static_cast<double>(dweights[t * K + k]) * cfg.route_scale;
      dot += dpre[k] * pre[k];
    }
    if (normalise) {
      const double denom = static_cast<double>(ctx.norm_sum[t]) + kNormEps;
      for (std::int64_t k = 0; k < K; ++k) dpre[k] = dpre[k] / denom - dot / (denom * denom);
    }
    if (cfg.score == ScoreFunction::softmax && !cfg.softmax_before_topk) {
      double pd = 0;  // softmax over the k chosen logits
      for (std::int64_t k = 0; k < K; ++k) pd += pre[k] * dpre[k];
      for (std::int64_t k = 0; k < K; ++k) dl[idx[k]] += static_cast<T>(pre[k] * (dpre[k] - pd));
    } else {
      std::fill(dp.begin(), dp.end(), 0.0);
      for (std::int64_t k = 0; k < K; ++k) dp[idx[k]] += dpre[k];
      if (cfg.score == ScoreFunction::softmax)
        softmax_backward_add(s, dp.data(), E, dl);
      else
        for (std::int64_t e = 0; e < E; ++e) dl[e] += static_cast<T>(dp[e] * s[e] * (1.0 - s[e]));
    }
    if (with_aux && ctx.valid[t] && aux_loss_grad != 0) {
      const T* fp = ctx.full_probs.data() + t * E;
      for (std::int64_t e = 0; e < E; ++e) dp[e] = aux_loss_grad * ctx.aux_f[e] / ctx.t_valid;
      if (cfg.score == ScoreFunction::softmax)
        softmax_backward_add(fp, dp.data(), E, dl);
      else
        for (std::int64_t e = 0; e < E; ++e) dl[e] += static_cast<T>(dp[e] * fp[e] * (1.0 - fp[e]));
    }
  }
  gemm<T>(false, false, tokens, D, E, dlogits.data(), weight, dx, false);
  gemm<T>(true, false, E, D, tokens, dlogits.data(), x, dweight, true);
  if (dbias)
    for (std::int64_t t = 0; t < tokens; ++t)
      for (std::int64_t e = 0; e < E; ++e) dbias[e] += dlogits[t * E + e];
}

std::vector<double> expert_load(const std::int64_t* indices, const std::uint8_t* token_mask,
                                std::int64_t tokens, std::int64_t top_k, std::int64_t num_experts) {
  std::vector<double> load(static_cast<std::size_t>(num_experts), 0.0);
  for (std::int64_t t = 0; t < tokens; ++t) {
    if (token_mask && !token_mask[t]) continue;
    for (std::int64_t k = 0; k < top_k; ++k) {
      const std::int64_t e = indices[t * top_k + k];
      if (e >= 0 && e < num_experts) load[e] += 1.0;
    }
  }
  return load;
}

void update_expert_bias(float* expert_bias, const std::vector<double>& load, double factor) {
  if (load.empty()) return;
  double mean = 0;
  for (double l : load) mean += l;
  mean /= static_cast<double>(load.size());
  for (std::size_t e = 0; e < load.size(); ++e) {
    const double d = mean - load[e];
    const float sign = d > 0 ? 1.0f : d < 0 ? -1.0f : 0.0f;
    expert_bias[e] += static_cast<float>(factor) * sign;
  }
}

#define G4_INSTANTIATE(T)                                                                                \
  template void gate_forward<T>(const GateConfig&, const T*, const T*, const T*, const T*,               \
                                const std::uint8_t*, std::int64_t, T*, std::int64_t*, double*,           \
                                GateContext<T>*);                                                        \
  template void gate_backward<T>(const GateConfig&, const T*, const T*, const GateContext<T>&, const T*, \
                                 double, T*, T*, T*);
G4_INSTANTIATE(float)
G4_INSTANTIATE(double)
#undef G4_INSTANTIATE

}  // namespace g4
