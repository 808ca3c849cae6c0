#include "model/gemma4_model.h"

#include <cmath>

#include "core/error.h"
#include "core/profile.h"
#include "model/attention_layer.h"
#include "model/dense_mlp.h"
#include "model/forward_context.h"
#include "model/moe_block.h"
#include "ops/cpu/cross_entropy.h"
#include "ops/cpu/gelu.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/rms_norm.h"

namespace g4 {

Gemma4Model load_gemma4_model(const std::string& dir) {
  Gemma4Model m;
  m.config = load_config(dir);
  const Checkpoint ckpt = Checkpoint::open(dir);
  m.weights = load_gemma4_weights(m.config, ckpt);
  return m;
}

namespace {

Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) {
  Tensor y(DType::f32, x.shape());
  rms_norm_forward(x.f32(), weight.empty() ? nullptr : weight.f32(), y.f32(), x.numel() / x.dim(-1),
                   x.dim(-1), eps);
  return y;
}

void add_into(Tensor& x, const Tensor& y) {
  float* xp = x.f32();
  const float* yp = y.f32();
  for (std::int64_t i = 0; i < x.numel(); ++i) xp[i] += yp[i];
}

// Per-layer inputs [T, L, P] (§3.2): (RMSNorm_P(proj(e) · H^-0.5) + table[ids] · sqrt(P)) · 2^-0.5.
Tensor per_layer_inputs(const Gemma4Model& m, const Batch& batch, const Tensor& embedded) {
  const TextConfig& c = m.config.text;
  const Gemma4Weights& w = m.weights;
  const std::int64_t T = batch.tokens(), H = c.hidden_size, L = c.num_hidden_layers,
                     P = c.hidden_size_per_layer_input;
  Tensor ple(DType::f32, {T, L, P});
  linear_forward(embedded.f32(), w.per_layer_model_projection.f32(), ple.f32(), T, L * P, H);
  const float proj_scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(H)));
  for (std::int64_t i = 0; i < ple.numel(); ++i) ple.f32()[i] *= proj_scale;
  rms_norm_forward(ple.f32(), w.per_layer_projection_norm.f32(), ple.f32(), T * L, P,
                   static_cast<float>(c.rms_norm_eps));
  const float token_scale = static_cast<float>(std::sqrt(static_cast<double>(P)));
  const float combine = static_cast<float>(1.0 / std::sqrt(2.0));
  for (std::int64_t t = 0; t < T; ++t) {
    const std::int64_t id = batch.input_ids[t];
    check(id < c.vocab_size_per_layer_input, "token id ", id,
          " is out of range for vocab_size_per_layer_input ", c.vocab_size_per_layer_input);
    const float* row = w.embed_tokens_per_layer.f32() + id * L * P;
    float* out = ple.f32() + t * L * P;
    for (std::int64_t i = 0; i < L * P; ++i) out[i] = (out[i] + row[i] * token_scale) * combine;
  }
  return ple;
}

// One decoder layer (§3.3), x [T, H] updated in place.
void decoder_layer_forward(const Gemma4Model& m, const LayerSpec& s, Tensor& x, const Tensor& ple,
                           ForwardContext& ctx) {
  const TextConfig& c = m.config.text;
  const LayerWeights& w = m.weights.layers[s.index];
  const float eps = static_cast<float>(c.rms_norm_eps);
  const std::int64_t T = x.dim(0), H = x.dim(1);

  ScopedPhase layer_phase("layer (all)");
  const Tensor attn = attention_layer_forward(s, w.attention, rms_norm(x, w.input_norm, eps), ctx, eps);
  add_into(x, rms_norm(attn, w.post_attention_norm, eps));

  const Tensor& r = x;
  Tensor m_out;
  {
    ScopedPhase phase("dense mlp");
    m_out = dense_mlp_forward(rms_norm(r, w.pre_feedforward_norm, eps), w.mlp_gate, w.mlp_up, w.mlp_down);
  }
  if (s.moe) {
    ScopedPhase phase("moe");
    Tensor m1 = rms_norm(m_out, w.moe.post_norm_1, eps);
    const Routing routing = router_forward(w.moe, r, c.top_k_experts, eps);
    const Tensor e2 = experts_forward(w.moe, rms_norm(r, w.moe.pre_norm_2, eps), routing);
    add_into(m1, rms_norm(e2, w.moe.post_norm_2, eps));
    m_out = std::move(m1);
  }
  add_into(x, rms_norm(m_out, w.post_feedforward_norm, eps));

  if (s.ple_width > 0) {
    const std::int64_t P = s.ple_width, L = c.num_hidden_layers;
    Tensor g(DType::f32, {T, P});
    linear_forward(x.f32(), w.ple_gate.f32(), g.f32(), T, P, H);
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t i = 0; i < P; ++i)
        g.f32()[t * P + i] = gelu_tanh(g.f32()[t * P + i]) * ple.f32()[(t * L + s.index) * P + i];
    Tensor proj(DType::f32, {T, H});
    linear_forward(g.f32(), w.ple_projection.f32(), proj.f32(), T, H, P);
    add_into(x, rms_norm(proj, w.ple_post_norm, eps));
  }
  for (std::int64_t i = 0; i < x.numel(); ++i) x.f32()[i] *= w.layer_scalar;
}

}  // namespace

ForwardResult gemma4_forward(const Gemma4Model& m, const Batch& batch, bool keep_hidden) {
  const TextConfig& c = m.config.text;
  const Gemma4Weights& w = m.weights;
  const std::int64_t B = batch.batch_size, S = batch.seq_len, T = batch.tokens(), H = c.hidden_size;
  const float eps = static_cast<float>(c.rms_norm_eps);
  ForwardResult result;

  // Embedding × sqrt(H), the scale rounded to the compute dtype (fp32 here).
  const float embed_scale = static_cast<float>(std::sqrt(static_cast<double>(H)));
  Tensor x(DType::f32, {T, H});
  for (std::int64_t t = 0; t < T; ++t) {
    const std::int64_t id = batch.input_ids[t];
    check(id >= 0 && id < c.vocab_size, "token id ", id, " is out of range for vocab_size ", c.vocab_size);
    const float* row = w.embed_tokens.f32() + id * H;
    for (std::int64_t h = 0; h < H; ++h) x.f32()[t * H + h] = row[h] * embed_scale;
  }
  if (keep_hidden) result.hidden.push_back(x.clone().reshaped({B, S, H}));
  const Tensor ple = c.hidden_size_per_layer_input > 0 ? per_layer_inputs(m, batch, x) : Tensor();

  ForwardContext ctx = make_forward_context(c, batch);
  for (const LayerSpec& s : c.layers) {
    decoder_layer_forward(m, s, x, ple, ctx);
    if (keep_hidden) result.hidden.push_back(x.clone().reshaped({B, S, H}));
  }

  ScopedPhase head_phase("final norm + head");
  const Tensor h = rms_norm(x, w.final_norm, eps);
  const std::int64_t V = c.vocab_size;
  result.logits = Tensor(DType::f32, {B, S, V});
  linear_forward(h.f32(), w.head().f32(), result.logits.f32(), T, V, H);
  if (c.final_logit_softcapping)
    softcap_forward(result.logits.f32(), result.logits.numel(),
                    static_cast<float>(*c.final_logit_softcapping));
  return result;
}

}  // namespace g4
