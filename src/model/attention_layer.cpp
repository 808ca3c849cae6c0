#include "model/attention_layer.h"

#include "core/profile.h"
#include "ops/cpu/attention.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/rms_norm.h"

namespace g4 {

Tensor attention_layer_forward(const LayerSpec& s, const AttentionWeights& w, const Tensor& a,
                               ForwardContext& ctx, float eps) {
  const std::int64_t T = a.dim(0), H = a.dim(1);
  const int D = s.head_dim, Nq = s.num_q_heads, Nkv = s.num_kv_heads;
  const RopeTable& rope = ctx.rope.at(s.attention);

  ScopedPhase phase("attention");
  Tensor q(DType::f32, {T, Nq, D});
  linear_forward(a.f32(), w.q_proj.f32(), q.f32(), T, Nq * D, H);
  rms_norm_forward(q.f32(), w.q_norm.f32(), q.f32(), T * Nq, D, eps);
  rope_apply(q.f32(), rope, T, Nq);

  Tensor k, v;
  if (s.kv_source >= 0) {
    std::tie(k, v) = ctx.shared_kv.at(s.attention);
  } else {
    k = Tensor(DType::f32, {T, Nkv, D});
    linear_forward(a.f32(), w.k_proj.f32(), k.f32(), T, Nkv * D, H);
    if (s.k_eq_v) {
      v = k.clone();  // V is the raw K projection, before k_norm and RoPE
    } else {
      v = Tensor(DType::f32, {T, Nkv, D});
      linear_forward(a.f32(), w.v_proj.f32(), v.f32(), T, Nkv * D, H);
    }
    rms_norm_forward(k.f32(), w.k_norm.f32(), k.f32(), T * Nkv, D, eps);
    rope_apply(k.f32(), rope, T, Nkv);
    rms_norm_forward(v.f32(), nullptr, v.f32(), T * Nkv, D, eps);
    if (s.stores_shared_kv) ctx.shared_kv[s.attention] = {k, v};
  }

  const std::int64_t B = ctx.batch->batch_size, S = ctx.batch->seq_len;
  ScopedPhase core_phase("attention core");
  Tensor attn(DType::f32, {T, Nq * D});
  for (std::int64_t b = 0; b < B; ++b) {
    attention_forward(q.f32() + b * S * Nq * D, k.f32() + b * S * Nkv * D, v.f32() + b * S * Nkv * D,
                      ctx.masks.at(s.attention)[b].data(), attn.f32() + b * S * Nq * D, S, Nq, Nkv, D);
  }
  Tensor out(DType::f32, {T, H});
  linear_forward(attn.f32(), w.o_proj.f32(), out.f32(), T, H, Nq * D);
  return out;
}

}  // namespace g4
