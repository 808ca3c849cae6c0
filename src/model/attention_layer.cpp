#include "model/attention_layer.h"

#include "core/profile.h"
#include "model/linear.h"
#include "ops/ops.h"

namespace g4 {

Tensor attention_layer_forward(const LayerSpec& s, const AttentionWeights& w, const Tensor& a,
                               ForwardContext& ctx, float eps, AttentionTape* tape) {
  ScopedPhase phase("attention");
  const std::int64_t T = a.dim(0);
  const int D = s.head_dim, Nq = s.num_q_heads, Nkv = s.num_kv_heads;
  const RopeTable& rope = ctx.rope.at(s.attention);

  const Tensor q_raw = Linear(w.q_proj).forward(a).reshaped({T, Nq, D});
  Tensor q = ops::rms_norm(q_raw, w.q_norm, eps);
  ops::rope_(q, rope);

  Tensor k_raw, v_raw, k, v;
  std::vector<AttentionVisibility> rows;  // with a cache: what its extend returned
  if (s.kv_source >= 0) {
    if (ctx.cache) {
      const CachedKeys& cached = ctx.cached_shared.at(s.attention);
      k = cached.k, v = cached.v, rows = cached.rows;
    } else {
      std::tie(k, v) = ctx.shared_kv.at(s.attention);
    }
  } else {
    k_raw = Linear(w.k_proj).forward(a).reshaped({T, Nkv, D});
    // k_eq_v: V is the raw K projection, before k_norm and RoPE.
    v_raw = s.k_eq_v ? k_raw : Linear(w.v_proj).forward(a).reshaped({T, Nkv, D});
    k = ops::rms_norm(k_raw, w.k_norm, eps);
    ops::rope_(k, rope);
    v = ops::rms_norm(v_raw, Tensor(), eps);
    if (ctx.cache) {
      CachedKeys cached = ctx.cache->extend(s, k, v);
      k = cached.k, v = cached.v, rows = cached.rows;
      if (s.stores_shared_kv) ctx.cached_shared[s.attention] = std::move(cached);
    } else if (s.stores_shared_kv) {
      ctx.shared_kv[s.attention] = {k, v};
    }
  }
  if (!ctx.cache) rows = attention_rows(ctx, s.window);

  ScopedPhase core_phase("attention core");
  const Tensor o = ops::attention(q, k, v, rows).reshaped({T, Nq * D});
  Tensor out = Linear(w.o_proj).forward(o);
  if (tape) *tape = {a, q_raw, k_raw, v_raw, q, k, v, o};
  return out;
}

Tensor attention_layer_backward(const LayerSpec& s, const AttentionWeights& w, const AttentionTape& t,
                                const Tensor& dout, ForwardContext& ctx, float eps, AttentionWeights& g) {
  const std::int64_t T = t.a.dim(0);
  const int D = s.head_dim, Nq = s.num_q_heads, Nkv = s.num_kv_heads;
  const RopeTable& rope = ctx.rope.at(s.attention);

  const Tensor d_o = Linear(w.o_proj, &g.o_proj).backward(t.o, dout).reshaped({T, Nq, D});

  // dK/dV accumulators: a shared layer adds into its source's; a source starts from what shared layers added.
  auto& acc = ctx.shared_kv_grad[s.attention];
  if (acc.first.empty())
    acc = {ops::zeros({T, Nkv, D}, t.a.device(), t.a.dtype()),
           ops::zeros({T, Nkv, D}, t.a.device(), t.a.dtype())};
  Tensor dq =
      ops::attention_backward(t.q, t.k, t.v, attention_rows(ctx, s.window), d_o, acc.first, acc.second);

  ops::rope_backward_(dq, rope);
  Tensor unused;  // the weightless norms have no weight gradient
  const Tensor dq_raw = ops::rms_norm_backward(t.q_raw, w.q_norm, dq, g.q_norm, eps).reshaped({T, Nq * D});
  Tensor da = Linear(w.q_proj, &g.q_proj).backward(t.a, dq_raw);
  if (s.kv_source >= 0) return da;  // dK/dV wait in the context for the source layer

  Tensor dk = std::move(acc.first), dv = std::move(acc.second);
  ctx.shared_kv_grad.erase(s.attention);
  ops::rope_backward_(dk, rope);
  Tensor dk_raw = ops::rms_norm_backward(t.k_raw, w.k_norm, dk, g.k_norm, eps).reshaped({T, Nkv * D});
  const Tensor dv_raw = ops::rms_norm_backward(t.v_raw, Tensor(), dv, unused, eps).reshaped({T, Nkv * D});
  if (s.k_eq_v) {
    ops::add_(dk_raw, dv_raw);
  } else {
    Linear(w.v_proj, &g.v_proj).backward_add(t.a, dv_raw, da);
  }
  Linear(w.k_proj, &g.k_proj).backward_add(t.a, dk_raw, da);
  return da;
}

}  // namespace g4
