#include "model/attention_layer.h"

#include "core/profile.h"
#include "ops/cpu/attention.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/rms_norm.h"

namespace g4 {

Tensor attention_layer_forward(const LayerSpec& s, const AttentionWeights& w, const Tensor& a,
                               ForwardContext& ctx, float eps, AttentionTape* tape) {
  ScopedPhase phase("attention");
  const std::int64_t T = a.dim(0), H = a.dim(1);
  const int D = s.head_dim, Nq = s.num_q_heads, Nkv = s.num_kv_heads;
  const RopeTable& rope = ctx.rope.at(s.attention);

  Tensor q_raw(DType::f32, {T, Nq, D});
  linear_forward(a.f32(), w.q_proj.f32(), q_raw.f32(), T, Nq * D, H);
  Tensor q(DType::f32, {T, Nq, D});
  rms_norm_forward(q_raw.f32(), w.q_norm.f32(), q.f32(), T * Nq, D, eps);
  rope_apply(q.f32(), rope, T, Nq);

  Tensor k_raw, v_raw, k, v;
  if (s.kv_source >= 0) {
    std::tie(k, v) = ctx.shared_kv.at(s.attention);
  } else {
    k_raw = Tensor(DType::f32, {T, Nkv, D});
    linear_forward(a.f32(), w.k_proj.f32(), k_raw.f32(), T, Nkv * D, H);
    if (s.k_eq_v) {
      v_raw = k_raw;  // V is the raw K projection, before k_norm and RoPE
    } else {
      v_raw = Tensor(DType::f32, {T, Nkv, D});
      linear_forward(a.f32(), w.v_proj.f32(), v_raw.f32(), T, Nkv * D, H);
    }
    k = Tensor(DType::f32, {T, Nkv, D});
    v = Tensor(DType::f32, {T, Nkv, D});
    rms_norm_forward(k_raw.f32(), w.k_norm.f32(), k.f32(), T * Nkv, D, eps);
    rope_apply(k.f32(), rope, T, Nkv);
    rms_norm_forward(v_raw.f32(), nullptr, v.f32(), T * Nkv, D, eps);
    if (s.stores_shared_kv) ctx.shared_kv[s.attention] = {k, v};
  }

  ScopedPhase core_phase("attention core");
  const std::int64_t B = ctx.batch->batch_size, S = ctx.batch->seq_len;
  Tensor o(DType::f32, {T, Nq * D});
  for (std::int64_t b = 0; b < B; ++b) {
    attention_forward(q.f32() + b * S * Nq * D, k.f32() + b * S * Nkv * D, v.f32() + b * S * Nkv * D,
                      attention_visibility(ctx, s.window, b), o.f32() + b * S * Nq * D, Nq, Nkv, D);
  }
  Tensor out(DType::f32, {T, H});
  linear_forward(o.f32(), w.o_proj.f32(), out.f32(), T, H, Nq * D);
  if (tape) *tape = {a, q_raw, k_raw, v_raw, q, k, v, o};
  return out;
}

Tensor attention_layer_backward(const LayerSpec& s, const AttentionWeights& w, const AttentionTape& t,
                                const Tensor& dout, ForwardContext& ctx, float eps, AttentionWeights& g) {
  const std::int64_t T = t.a.dim(0), H = t.a.dim(1);
  const int D = s.head_dim, Nq = s.num_q_heads, Nkv = s.num_kv_heads;
  const RopeTable& rope = ctx.rope.at(s.attention);
  const std::int64_t B = ctx.batch->batch_size, S = ctx.batch->seq_len;

  matmul_tn(dout.f32(), t.o.f32(), g.o_proj.f32(), H, Nq * D, T, true);  // dWo += doutᵀ · o
  Tensor d_o(DType::f32, {T, Nq * D});
  matmul_nn(dout.f32(), w.o_proj.f32(), d_o.f32(), T, Nq * D, H);

  // dK/dV accumulators: a shared layer adds into its source's; a source starts from what shared layers added.
  auto& acc = ctx.shared_kv_grad[s.attention];
  if (acc.first.empty()) acc = {Tensor(DType::f32, {T, Nkv, D}), Tensor(DType::f32, {T, Nkv, D})};
  Tensor dq(DType::f32, {T, Nq, D});
  for (std::int64_t b = 0; b < B; ++b) {
    attention_backward(t.q.f32() + b * S * Nq * D, t.k.f32() + b * S * Nkv * D, t.v.f32() + b * S * Nkv * D,
                       attention_visibility(ctx, s.window, b), d_o.f32() + b * S * Nq * D,
                       dq.f32() + b * S * Nq * D, acc.first.f32() + b * S * Nkv * D,
                       acc.second.f32() + b * S * Nkv * D, Nq, Nkv, D);
  }

  Tensor da(DType::f32, {T, H});
  rope_backward(dq.f32(), rope, T, Nq);
  Tensor dq_raw(DType::f32, {T, Nq, D});
  rms_norm_backward(t.q_raw.f32(), w.q_norm.f32(), dq.f32(), dq_raw.f32(), g.q_norm.f32(), T * Nq, D, eps);
  matmul_tn(dq_raw.f32(), t.a.f32(), g.q_proj.f32(), Nq * D, H, T, true);
  matmul_nn(dq_raw.f32(), w.q_proj.f32(), da.f32(), T, H, Nq * D);
  if (s.kv_source >= 0) return da;  // dK/dV wait in the context for the source layer

  Tensor dk = std::move(acc.first), dv = std::move(acc.second);
  ctx.shared_kv_grad.erase(s.attention);
  rope_backward(dk.f32(), rope, T, Nkv);
  Tensor dk_raw(DType::f32, {T, Nkv, D}), dv_raw(DType::f32, {T, Nkv, D});
  rms_norm_backward(t.k_raw.f32(), w.k_norm.f32(), dk.f32(), dk_raw.f32(), g.k_norm.f32(), T * Nkv, D, eps);
  rms_norm_backward(t.v_raw.f32(), nullptr, dv.f32(), dv_raw.f32(), nullptr, T * Nkv, D, eps);
  if (s.k_eq_v) {
    for (std::int64_t i = 0; i < dk_raw.numel(); ++i) dk_raw.f32()[i] += dv_raw.f32()[i];
  } else {
    matmul_tn(dv_raw.f32(), t.a.f32(), g.v_proj.f32(), Nkv * D, H, T, true);
    matmul_nn(dv_raw.f32(), w.v_proj.f32(), da.f32(), T, H, Nkv * D, true);
  }
  matmul_tn(dk_raw.f32(), t.a.f32(), g.k_proj.f32(), Nkv * D, H, T, true);
  matmul_nn(dk_raw.f32(), w.k_proj.f32(), da.f32(), T, H, Nkv * D, true);
  return da;
}

}  // namespace g4
