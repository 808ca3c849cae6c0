#include "model/decoder_layer.h"

#include "core/profile.h"
#include "model/linear.h"
#include "moe/moe_block.h"
#include "ops/ops.h"

namespace g4 {

namespace {

Gemma4MoeConfig moe_config(const TextConfig& c) {
  return gemma4_moe_config(c.hidden_size, c.num_experts, c.top_k_experts, c.moe_intermediate_size,
                           c.rms_norm_eps, ExpertsBackend::grouped);
}

MoeBlockWeights moe_weights(const MoeWeights& w) {
  return {w.router_proj, w.router_scale, w.gate_and_up, w.down};
}

}  // namespace

void decoder_layer_forward(const TextConfig& c, const LayerSpec& s, const LayerWeights& w, Tensor& x,
                           const Tensor& ple, ForwardContext& ctx, LayerTape* tape) {
  ScopedPhase layer_phase("layer (all)");
  const float eps = static_cast<float>(c.rms_norm_eps);
  if (tape) tape->x_in = ops::copy(x);

  Tensor attn = attention_layer_forward(s, w.attention, ops::rms_norm(x, w.input_norm, eps), ctx, eps,
                                        tape ? &tape->attention : nullptr);
  ops::add_(x, ops::rms_norm(attn, w.post_attention_norm, eps));
  if (tape) {
    tape->attn_out = attn;
    tape->x_mid = ops::copy(x);
  }

  const Tensor& r = x;
  Tensor m;
  {
    ScopedPhase phase("dense mlp");
    m = dense_mlp_forward(ops::rms_norm(r, w.pre_feedforward_norm, eps), w.mlp_gate, w.mlp_up, w.mlp_down,
                          tape ? &tape->mlp : nullptr);
  }
  if (tape) tape->dense_out = m;
  if (s.moe) {
    ScopedPhase phase("moe");
    Tensor m1 = ops::rms_norm(m, w.moe.post_norm_1, eps);
    Tensor xe = ops::rms_norm(r, w.moe.pre_norm_2, eps);
    Gemma4MoeContext<float> local;
    Tensor e2 =
        moe_block_forward(moe_config(c), moe_weights(w.moe), r, xe, tape ? tape->moe : local, ctx.dispatcher);
    ops::add_(m1, ops::rms_norm(e2, w.moe.post_norm_2, eps));
    m = std::move(m1);
    if (tape) {
      tape->xe = std::move(xe);
      tape->experts_out = std::move(e2);
    }
  }
  if (tape) tape->m_sum = m;
  ops::add_(x, ops::rms_norm(m, w.post_feedforward_norm, eps));

  if (s.ple_width > 0) {
    if (tape) tape->x_post = ops::copy(x);
    Tensor g_pre = Linear(w.ple_gate).forward(x);
    Tensor g = ops::geglu(g_pre, ops::middle_slice(ple, s.index));
    Tensor proj = Linear(w.ple_projection).forward(g);
    ops::add_(x, ops::rms_norm(proj, w.ple_post_norm, eps));
    if (tape) {
      tape->ple_gate_pre = std::move(g_pre);
      tape->ple_mixed = std::move(g);
      tape->ple_proj = std::move(proj);
    }
  }
  ops::scale_(x, w.layer_scalar);
}

Tensor decoder_layer_backward(const TextConfig& c, const LayerSpec& s, const LayerWeights& w,
                              const LayerTape& t, const Tensor& dx_out, const Tensor& ple, Tensor& dple,
                              ForwardContext& ctx, LayerWeights& g) {
  const float eps = static_cast<float>(c.rms_norm_eps);
  Tensor dx = ops::scaled(dx_out, w.layer_scalar);

  if (s.ple_width > 0) {
    const Tensor dproj = ops::rms_norm_backward(t.ple_proj, w.ple_post_norm, dx, g.ple_post_norm, eps);
    const Tensor dmixed = Linear(w.ple_projection, &g.ple_projection).backward(t.ple_mixed, dproj);
    const ops::GegluGrads dg = ops::geglu_backward(t.ple_gate_pre, ops::middle_slice(ple, s.index), dmixed);
    ops::middle_slice_add_(dple, s.index, dg.up);
    Linear(w.ple_gate, &g.ple_gate).backward_add(t.x_post, dg.gate, dx);
  }

  // x_post = x_mid + post_ff_norm(m_sum)
  const Tensor dm_sum =
      ops::rms_norm_backward(t.m_sum, w.post_feedforward_norm, dx, g.post_feedforward_norm, eps);
  Tensor dm = dm_sum;
  if (s.moe) {
    dm = ops::rms_norm_backward(t.dense_out, w.moe.post_norm_1, dm_sum, g.moe.post_norm_1, eps);
    const Tensor de2 =
        ops::rms_norm_backward(t.experts_out, w.moe.post_norm_2, dm_sum, g.moe.post_norm_2, eps);
    const MoeBlockInputGrads d = moe_block_backward(
        moe_config(c), moe_weights(w.moe), t.x_mid, t.xe, t.moe, de2,
        MoeBlockGrads{g.moe.router_proj, g.moe.router_scale, g.moe.gate_and_up, g.moe.down}, ctx.dispatcher);
    ops::add_(dx, ops::rms_norm_backward(t.x_mid, w.moe.pre_norm_2, d.expert_input, g.moe.pre_norm_2, eps));
    ops::add_(dx, d.gate_input);
  }
  const Tensor dy =
      dense_mlp_backward(t.mlp, w.mlp_gate, w.mlp_up, w.mlp_down, dm, g.mlp_gate, g.mlp_up, g.mlp_down);
  ops::add_(dx, ops::rms_norm_backward(t.x_mid, w.pre_feedforward_norm, dy, g.pre_feedforward_norm, eps));

  // x_mid = x_in + post_attention_norm(attn_out)
  const Tensor dattn =
      ops::rms_norm_backward(t.attn_out, w.post_attention_norm, dx, g.post_attention_norm, eps);
  const Tensor da = attention_layer_backward(s, w.attention, t.attention, dattn, ctx, eps, g.attention);
  ops::add_(dx, ops::rms_norm_backward(t.x_in, w.input_norm, da, g.input_norm, eps));
  return dx;
}

}  // namespace g4
