#include "model/attention_layer.h"

#include "core/profile.h"
#include "ops/ops.h"

namespace g4 {

Tensor attention_layer_forward(const LayerSpec& s, const AttentionWeights& w, const Tensor& a,
                               ForwardContext& ctx, float eps, AttentionTape* tape) {
  ScopedPhase phase("attention");
  const std::int64_t T = a.dim(0);
  const int D = s.head_dim, Nq = s.num_q_heads, Nkv = s.num_kv_heads;
  const RopeTable& rope = ctx.rope.at(s.attention);

  const Tensor q_raw = ops::linear(a, w.q_proj).reshaped({T, Nq, D});
  Tensor q = ops::rms_norm(q_raw, w.q_norm, eps);
  ops::rope_(q, rope);

  Tensor k_raw, v_raw, k, v;
  if (s.kv_source >= 0) {
    std::tie(k, v) = ctx.shared_kv.at(s.attention);
  } else {
    k_raw = ops::linear(a, w.k_proj).reshaped({T, Nkv, D});
    // k_eq_v: V is the raw K projection, before k_norm and RoPE.
    v_raw = s.k_eq_v ? k_raw : ops::linear(a, w.v_proj).reshaped({T, Nkv, D});
    k = ops::rms_norm(k_raw, w.k_norm, eps);
    ops::rope_(k, rope);
    v = ops::rms_norm(v_raw, Tensor(), eps);
    if (s.stores_shared_kv) ctx.shared_kv[s.attention] = {k, v};
  }

  ScopedPhase core_phase("attention core");
  const Tensor o = ops::attention(q, k, v, attention_rows(ctx, s.window)).reshaped({T, Nq * D});
  Tensor out = ops::linear(o, w.o_proj);
  if (tape) *tape = {a, q_raw, k_raw, v_raw, q, k, v, o};
  return out;
}

Tensor attention_layer_backward(const LayerSpec& s, const AttentionWeights& w, const AttentionTape& t,
                                const Tensor& dout, ForwardContext& ctx, float eps, AttentionWeights& g) {
  const std::int64_t T = t.a.dim(0);
  const int D = s.head_dim, Nq = s.num_q_heads, Nkv = s.num_kv_heads;
  const RopeTable& rope = ctx.rope.at(s.attention);

  ops::linear_backward_weight(dout, t.o, g.o_proj);
  const Tensor d_o = ops::linear_backward_input(dout, w.o_proj).reshaped({T, Nq, D});

  // dK/dV accumulators: a shared layer adds into its source's; a source starts from what shared layers added.
  auto& acc = ctx.shared_kv_grad[s.attention];
  if (acc.first.empty()) acc = {Tensor(DType::f32, {T, Nkv, D}), Tensor(DType::f32, {T, Nkv, D})};
  Tensor dq =
      ops::attention_backward(t.q, t.k, t.v, attention_rows(ctx, s.window), d_o, acc.first, acc.second);

  ops::rope_backward_(dq, rope);
  Tensor unused;  // the weightless norms have no weight gradient
  const Tensor dq_raw = ops::rms_norm_backward(t.q_raw, w.q_norm, dq, g.q_norm, eps).reshaped({T, Nq * D});
  ops::linear_backward_weight(dq_raw, t.a, g.q_proj);
  Tensor da = ops::linear_backward_input(dq_raw, w.q_proj);
  if (s.kv_source >= 0) return da;  // dK/dV wait in the context for the source layer

  Tensor dk = std::move(acc.first), dv = std::move(acc.second);
  ctx.shared_kv_grad.erase(s.attention);
  ops::rope_backward_(dk, rope);
  Tensor dk_raw = ops::rms_norm_backward(t.k_raw, w.k_norm, dk, g.k_norm, eps).reshaped({T, Nkv * D});
  const Tensor dv_raw = ops::rms_norm_backward(t.v_raw, Tensor(), dv, unused, eps).reshaped({T, Nkv * D});
  if (s.k_eq_v) {
    ops::add_(dk_raw, dv_raw);
  } else {
    ops::linear_backward_weight(dv_raw, t.a, g.v_proj);
    ops::linear_backward_input_add_(da, dv_raw, w.v_proj);
  }
  ops::linear_backward_weight(dk_raw, t.a, g.k_proj);
  ops::linear_backward_input_add_(da, dk_raw, w.k_proj);
  return da;
}

}  // namespace g4
