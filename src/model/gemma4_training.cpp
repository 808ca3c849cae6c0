#include "model/gemma4_training.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "model/decoder_layer.h"
#include "model/forward_context.h"
#include "model/linear.h"
#include "ops/ops.h"

namespace g4 {

StepResult gemma4_forward_backward(const Gemma4Model& m, const Batch& batch, Gemma4Weights& g,
                                   double normaliser, bool recompute) {
  const TextConfig& c = m.config.text;
  const Gemma4Weights& w = m.weights;
  const std::int64_t B = batch.batch_size, S = batch.seq_len, T = batch.tokens(), H = c.hidden_size;
  const std::int64_t V = c.vocab_size, L = c.num_hidden_layers, P = c.hidden_size_per_layer_input;
  const float eps = static_cast<float>(c.rms_norm_eps);

  // Forward, keeping every layer's tape.
  const Tensor x0 = embed_tokens(m, batch);
  Tensor ple_projected;
  const Tensor ple = P > 0 ? per_layer_inputs(m, batch, x0, &ple_projected) : Tensor();
  ForwardContext ctx = make_forward_context(c, batch);
  ctx.dispatcher = m.dispatcher;
  std::vector<LayerTape> tapes(c.layers.size());
  Tensor x = ops::copy(x0);
  std::vector<Tensor> layer_inputs(recompute ? c.layers.size() : 0);
  for (const LayerSpec& s : c.layers) {
    if (recompute) layer_inputs[s.index] = ops::copy(x);
    decoder_layer_forward(c, s, w.layers[s.index], x, ple, ctx, recompute ? nullptr : &tapes[s.index]);
  }
  const Tensor logits = final_logits(m, x, B, S);

  StepResult result;
  const LossResult loss = batch_loss(m, batch, logits);
  result.loss_sum = loss.loss_sum;
  result.num_tokens = loss.num_tokens;
  // With no counted token the backward still runs (every gradient it adds is zero): a collective
  // dispatcher needs every rank of its group in each MoE block's backward.
  if (normaliser <= 0) normaliser = static_cast<double>(std::max<std::int64_t>(loss.num_tokens, 1));

  // Head: logits = softcap(norm(x) · Eᵀ).
  Tensor dlogits = ops::causal_lm_loss_backward(logits, batch.labels, normaliser).reshaped({T, V});
  if (c.final_logit_softcapping)
    ops::softcap_backward_(logits, dlogits, static_cast<float>(*c.final_logit_softcapping));
  if (x.dtype() != DType::f32) dlogits = ops::to_dtype(dlogits, x.dtype());  // into the compute dtype
  const Linear head(w.head(), c.tie_word_embeddings ? &g.embed_tokens : &g.lm_head);
  Tensor dx = ops::rms_norm_backward(
      x, w.final_norm, head.backward(ops::rms_norm(x, w.final_norm, eps), dlogits), g.final_norm, eps);

  // Layers, last to first (KV-shared layers come after their sources, so their dK/dV are ready in time).
  Tensor dple = P > 0 ? ops::zeros({T, L, P}, x0.device(), x0.dtype()) : Tensor();
  for (auto it = c.layers.rbegin(); it != c.layers.rend(); ++it) {
    if (recompute) {  // rebuild this layer's tape from its saved input, then drop it after its backward
      Tensor layer_x = ops::copy(layer_inputs[it->index]);
      decoder_layer_forward(c, *it, w.layers[it->index], layer_x, ple, ctx, &tapes[it->index]);
    }
    dx = decoder_layer_backward(c, *it, w.layers[it->index], tapes[it->index], dx, ple, dple, ctx,
                                g.layers[it->index]);
    if (recompute) tapes[it->index] = LayerTape();
  }

  // Per-layer inputs: ple = (norm(projected) + table[ids] · sqrt(P)) · 2^-0.5, projected = (x0 · Wᵀ) ·
  // H^-0.5.
  if (P > 0) {
    ops::scale_(dple, static_cast<float>(1.0 / std::sqrt(2.0)));
    ops::embedding_backward(dple, batch.input_ids, static_cast<float>(std::sqrt(static_cast<double>(P))),
                            g.embed_tokens_per_layer);
    Tensor dproj = ops::rms_norm_backward(ple_projected, w.per_layer_projection_norm, dple,
                                          g.per_layer_projection_norm, eps)
                       .reshaped({T, L * P});
    ops::scale_(dproj, static_cast<float>(1.0 / std::sqrt(static_cast<double>(H))));
    Linear(w.per_layer_model_projection, &g.per_layer_model_projection).backward_add(x0, dproj, dx);
  }

  // Embedding: x0 = E[ids] · sqrt(H).
  ops::embedding_backward(dx, batch.input_ids, embedding_scale(c), g.embed_tokens);
  return result;
}

}  // namespace g4
