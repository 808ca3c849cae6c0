#include "model/gemma4_training.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "model/decoder_layer.h"
#include "model/forward_context.h"
#include "model/linear.h"
#include "ops/ops.h"

namespace g4 {

namespace {

struct HeadStep {
  LossResult loss;
  Tensor dx;  // d loss / d x, x the last layer's output [T, H]
};

// The head, forward and backward, in chunks of positions (head_chunk_rows): final norm, head to f32 logits,
// soft-cap, cross-entropy against `targets`, and back into the norm's input and the head's weight gradient.
// Chunks without a counted target are skipped (their gradient is zero).
HeadStep head_forward_backward(const Gemma4Model& m, const Tensor& x, std::span<const std::int64_t> targets,
                               double normaliser, Gemma4Weights& g, std::int64_t chunk_rows) {
  const TextConfig& c = m.config.text;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const std::int64_t T = x.dim(0);
  const Tensor normed = ops::rms_norm(x, m.weights.final_norm, eps);
  Tensor dnormed = ops::zeros(normed.shape(), normed.device(), normed.dtype());
  const Linear head(m.weights.head(), c.tie_word_embeddings ? &g.embed_tokens : &g.lm_head);
  const std::int64_t chunk = chunk_rows > 0 ? chunk_rows : head_chunk_rows(c);
  HeadStep out;
  for (std::int64_t first = 0; first < T; first += chunk) {
    const std::int64_t n = std::min(chunk, T - first);
    const std::span<const std::int64_t> tc =
        targets.subspan(static_cast<std::size_t>(first), static_cast<std::size_t>(n));
    if (std::all_of(tc.begin(), tc.end(), [](std::int64_t t) { return t == kIgnoreIndex; })) continue;
    const Tensor xc = normed.rows(first, n);
    const Tensor logits = head_logits(m, xc);
    const LossResult l = ops::token_loss(logits, tc);
    out.loss.loss_sum += l.loss_sum;
    out.loss.num_tokens += l.num_tokens;
    Tensor dlogits = ops::token_loss_backward(logits, tc, normaliser);
    if (c.final_logit_softcapping)
      ops::softcap_backward_(logits, dlogits, static_cast<float>(*c.final_logit_softcapping));
    if (xc.dtype() != DType::f32) dlogits = ops::to_dtype(dlogits, xc.dtype());  // into the compute dtype
    Tensor dxc = dnormed.rows(first, n);
    head.backward_add(xc, dlogits, dxc);
  }
  out.dx = ops::rms_norm_backward(x, m.weights.final_norm, dnormed, g.final_norm, eps);
  return out;
}

}  // namespace

namespace {

// Zeroes the gradient rows of the positions that hold the pad token: transformers' embedding tables have
// padding_idx = pad_token_id, so their pad row never receives a lookup's gradient (the tied head's still
// reaches it).
void zero_pad_rows_(Tensor& d, const Batch& batch, std::int64_t pad) {
  for (std::int64_t t = 0; t < batch.tokens(); ++t)
    if (batch.input_ids[static_cast<std::size_t>(t)] == pad) {
      Tensor row = d.rows(t, 1);
      ops::zero_(row);
    }
}

}  // namespace

StepResult gemma4_forward_backward(const Gemma4Model& m, const Batch& batch, Gemma4Weights& g,
                                   double normaliser, bool recompute, std::int64_t head_chunk_rows_override,
                                   const Tensor* image_tokens, Tensor* d_image_tokens) {
  const TextConfig& c = m.config.text;
  const Gemma4Weights& w = m.weights;
  const std::int64_t T = batch.tokens(), H = c.hidden_size;
  const std::int64_t L = c.num_hidden_layers, P = c.hidden_size_per_layer_input;
  const float eps = static_cast<float>(c.rms_norm_eps);

  // Forward, keeping every layer's tape.
  // Images: the placeholders' embeddings are the soft tokens; the per-layer inputs' table is read at the pad
  // id there, their projection sees the merged embeddings.
  const bool multimodal = !batch.mm_token_type.empty();
  Batch text_ids;
  const Tensor x0 = multimodal ? embed_multimodal(m, batch, image_tokens ? *image_tokens : Tensor(), text_ids)
                               : embed_tokens(m, batch);
  const Batch& text_batch = multimodal ? text_ids : batch;  // the ids the embedding tables were read at
  Tensor ple_projected;
  const Tensor ple = P > 0 ? per_layer_inputs(m, text_batch, x0, &ple_projected) : Tensor();
  ForwardContext ctx = make_forward_context(c, batch);
  ctx.dispatcher = m.dispatcher;
  std::vector<LayerTape> tapes(c.layers.size());
  Tensor x = ops::copy(x0);
  std::vector<Tensor> layer_inputs(recompute ? c.layers.size() : 0);
  for (const LayerSpec& s : c.layers) {
    if (recompute) layer_inputs[s.index] = ops::copy(x);
    decoder_layer_forward(c, s, w.layers[s.index], x, ple, ctx, recompute ? nullptr : &tapes[s.index]);
  }
  // Head: logits = softcap(norm(x) · Eᵀ), in chunks of positions (head_forward_backward).
  const std::vector<std::int64_t> targets = causal_lm_targets(batch);
  // With no counted token the backward still runs (every gradient it adds is zero): a collective
  // dispatcher needs every rank of its group in each MoE block's backward.
  if (normaliser <= 0) {
    const auto counted =
        std::count_if(targets.begin(), targets.end(), [](std::int64_t t) { return t != kIgnoreIndex; });
    normaliser = static_cast<double>(std::max<std::int64_t>(counted, 1));
  }
  HeadStep head = head_forward_backward(m, x, targets, normaliser, g, head_chunk_rows_override);
  StepResult result;
  result.loss_sum = head.loss.loss_sum;
  result.num_tokens = head.loss.num_tokens;
  Tensor dx = std::move(head.dx);

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
    Tensor dproj = ops::rms_norm_backward(ple_projected, w.per_layer_projection_norm, dple,
                                          g.per_layer_projection_norm, eps)
                       .reshaped({T, L * P});
    ops::scale_(dproj, static_cast<float>(1.0 / std::sqrt(static_cast<double>(H))));
    Linear(w.per_layer_model_projection, &g.per_layer_model_projection).backward_add(x0, dproj, dx);
    zero_pad_rows_(dple, text_batch, c.pad_token_id);
    ops::embedding_backward(dple, text_batch.input_ids, static_cast<float>(std::sqrt(static_cast<double>(P))),
                            g.embed_tokens_per_layer);
  }

  // Images: the placeholders' gradient goes to the soft tokens, none of it to the embedding table.
  if (multimodal) {
    check(d_image_tokens != nullptr, "gemma4_forward_backward: a batch with images needs d_image_tokens");
    *d_image_tokens = ops::zeros(image_tokens->shape(), dx.device(), dx.dtype());
    std::int64_t used = 0;
    for_each_image_run(batch, [&](std::int64_t first, std::int64_t n) {
      Tensor to = d_image_tokens->rows(used, n), rows = dx.rows(first, n);
      ops::assign_(to, rows);
      ops::zero_(rows);
      used += n;
    });
  }

  // Embedding: x0 = E[ids] · sqrt(H) (the placeholders' rows of dx are zero).
  zero_pad_rows_(dx, text_batch, c.pad_token_id);
  ops::embedding_backward(dx, text_batch.input_ids, embedding_scale(c), g.embed_tokens);
  return result;
}

}  // namespace g4
