#include "model/decoder_layer.h"

#include "core/profile.h"
#include "ops/cpu/gelu.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/rms_norm.h"

namespace g4 {

Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) {
  Tensor y(DType::f32, x.shape());
  rms_norm_forward(x.f32(), weight.empty() ? nullptr : weight.f32(), y.f32(), x.numel() / x.dim(-1),
                   x.dim(-1), eps);
  return y;
}

Tensor rms_norm_grad(const Tensor& x, const Tensor& weight, const Tensor& dy, Tensor& dweight, float eps) {
  Tensor dx(DType::f32, x.shape());
  rms_norm_backward(x.f32(), weight.empty() ? nullptr : weight.f32(), dy.f32(), dx.f32(),
                    dweight.empty() ? nullptr : dweight.f32(), x.numel() / x.dim(-1), x.dim(-1), eps);
  return dx;
}

namespace {

Gemma4MoeConfig moe_config(const TextConfig& c) {
  return gemma4_moe_config(c.hidden_size, c.num_experts, c.top_k_experts, c.moe_intermediate_size,
                           c.rms_norm_eps, ExpertsBackend::grouped);
}

Gemma4MoeWeights<float> moe_weights(const MoeWeights& w) {
  return {w.router_proj.f32(), w.router_scale.f32(), w.gate_and_up.f32(), w.down.f32()};
}

}  // namespace

void add_into(Tensor& x, const Tensor& y) {
  float* xp = x.f32();
  const float* yp = y.f32();
  const std::int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (std::int64_t i = 0; i < n; ++i) xp[i] += yp[i];
}

void decoder_layer_forward(const TextConfig& c, const LayerSpec& s, const LayerWeights& w, Tensor& x,
                           const Tensor& ple, ForwardContext& ctx, LayerTape* tape) {
  ScopedPhase layer_phase("layer (all)");
  const float eps = static_cast<float>(c.rms_norm_eps);
  const std::int64_t T = x.dim(0), H = x.dim(1);
  if (tape) tape->x_in = x.clone();

  Tensor attn = attention_layer_forward(s, w.attention, rms_norm(x, w.input_norm, eps), ctx, eps,
                                        tape ? &tape->attention : nullptr);
  add_into(x, rms_norm(attn, w.post_attention_norm, eps));
  if (tape) {
    tape->attn_out = attn;
    tape->x_mid = x.clone();
  }

  const Tensor& r = x;
  Tensor m;
  {
    ScopedPhase phase("dense mlp");
    m = dense_mlp_forward(rms_norm(r, w.pre_feedforward_norm, eps), w.mlp_gate, w.mlp_up, w.mlp_down,
                          tape ? &tape->mlp : nullptr);
  }
  if (tape) tape->dense_out = m;
  if (s.moe) {
    ScopedPhase phase("moe");
    Tensor m1 = rms_norm(m, w.moe.post_norm_1, eps);
    Tensor xe = rms_norm(r, w.moe.pre_norm_2, eps);
    Tensor e2(DType::f32, {T, H});
    Gemma4MoeContext<float> local;
    gemma4_moe_forward<float>(moe_config(c), moe_weights(w.moe), r.f32(), xe.f32(), nullptr, T, e2.f32(),
                              tape ? &tape->moe : &local, ctx.moe_parallel);
    add_into(m1, rms_norm(e2, w.moe.post_norm_2, eps));
    m = std::move(m1);
    if (tape) {
      tape->xe = std::move(xe);
      tape->experts_out = std::move(e2);
    }
  }
  if (tape) tape->m_sum = m;
  add_into(x, rms_norm(m, w.post_feedforward_norm, eps));

  if (s.ple_width > 0) {
    if (tape) tape->x_post = x.clone();
    const std::int64_t P = s.ple_width, L = c.num_hidden_layers;
    Tensor g_pre(DType::f32, {T, P}), g(DType::f32, {T, P});
    linear_forward(x.f32(), w.ple_gate.f32(), g_pre.f32(), T, P, H);
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t i = 0; i < P; ++i)
        g.f32()[t * P + i] = gelu_tanh(g_pre.f32()[t * P + i]) * ple.f32()[(t * L + s.index) * P + i];
    Tensor proj(DType::f32, {T, H});
    linear_forward(g.f32(), w.ple_projection.f32(), proj.f32(), T, H, P);
    add_into(x, rms_norm(proj, w.ple_post_norm, eps));
    if (tape) {
      tape->ple_gate_pre = g_pre;
      tape->ple_mixed = g;
      tape->ple_proj = proj;
    }
  }
  float* xp = x.f32();
  const std::int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (std::int64_t i = 0; i < n; ++i) xp[i] *= w.layer_scalar;
}

Tensor decoder_layer_backward(const TextConfig& c, const LayerSpec& s, const LayerWeights& w,
                              const LayerTape& t, const Tensor& dx_out, const Tensor& ple, Tensor& dple,
                              ForwardContext& ctx, LayerWeights& g) {
  const float eps = static_cast<float>(c.rms_norm_eps);
  const std::int64_t T = dx_out.dim(0), H = dx_out.dim(1);
  Tensor dx(DType::f32, {T, H});
  const std::int64_t n = dx.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (std::int64_t i = 0; i < n; ++i) dx.f32()[i] = dx_out.f32()[i] * w.layer_scalar;

  if (s.ple_width > 0) {
    const std::int64_t P = s.ple_width, L = c.num_hidden_layers;
    const Tensor dproj = rms_norm_grad(t.ple_proj, w.ple_post_norm, dx, g.ple_post_norm, eps);
    matmul_tn(dproj.f32(), t.ple_mixed.f32(), g.ple_projection.f32(), H, P, T, true);
    Tensor dg(DType::f32, {T, P});
    matmul_nn(dproj.f32(), w.ple_projection.f32(), dg.f32(), T, P, H);
    Tensor dg_pre(DType::f32, {T, P});
    for (std::int64_t t2 = 0; t2 < T; ++t2) {
      for (std::int64_t i = 0; i < P; ++i) {
        const float pre = t.ple_gate_pre.f32()[t2 * P + i];
        const std::int64_t at = (t2 * L + s.index) * P + i;
        dg_pre.f32()[t2 * P + i] = dg.f32()[t2 * P + i] * ple.f32()[at] * gelu_tanh_grad(pre);
        dple.f32()[at] += dg.f32()[t2 * P + i] * gelu_tanh(pre);
      }
    }
    matmul_tn(dg_pre.f32(), t.x_post.f32(), g.ple_gate.f32(), P, H, T, true);
    matmul_nn(dg_pre.f32(), w.ple_gate.f32(), dx.f32(), T, H, P, true);
  }

  // x_post = x_mid + post_ff_norm(m_sum)
  const Tensor dm_sum = rms_norm_grad(t.m_sum, w.post_feedforward_norm, dx, g.post_feedforward_norm, eps);
  Tensor dm = dm_sum;
  if (s.moe) {
    dm = rms_norm_grad(t.dense_out, w.moe.post_norm_1, dm_sum, g.moe.post_norm_1, eps);
    const Tensor de2 = rms_norm_grad(t.experts_out, w.moe.post_norm_2, dm_sum, g.moe.post_norm_2, eps);
    Tensor d_router(DType::f32, {T, H}), d_xe(DType::f32, {T, H});
    gemma4_moe_backward<float>(moe_config(c), moe_weights(w.moe), t.xe.f32(), t.moe, de2.f32(),
                               d_router.f32(), d_xe.f32(),
                               Gemma4MoeGrads<float>{g.moe.router_proj.f32(), g.moe.router_scale.f32(),
                                                     g.moe.gate_and_up.f32(), g.moe.down.f32()},
                               ctx.moe_parallel);
    add_into(dx, rms_norm_grad(t.x_mid, w.moe.pre_norm_2, d_xe, g.moe.pre_norm_2, eps));
    add_into(dx, d_router);
  }
  const Tensor dy =
      dense_mlp_backward(t.mlp, w.mlp_gate, w.mlp_up, w.mlp_down, dm, g.mlp_gate, g.mlp_up, g.mlp_down);
  add_into(dx, rms_norm_grad(t.x_mid, w.pre_feedforward_norm, dy, g.pre_feedforward_norm, eps));

  // x_mid = x_in + post_attention_norm(attn_out)
  const Tensor dattn = rms_norm_grad(t.attn_out, w.post_attention_norm, dx, g.post_attention_norm, eps);
  const Tensor da = attention_layer_backward(s, w.attention, t.attention, dattn, ctx, eps, g.attention);
  add_into(dx, rms_norm_grad(t.x_in, w.input_norm, da, g.input_norm, eps));
  return dx;
}

}  // namespace g4
