#include "model/gemma4_model.h"

#include <algorithm>
#include <cmath>
#include <span>

#include "core/error.h"
#include "core/finite.h"
#include "core/profile.h"
#include "model/decoder_layer.h"
#include "model/forward_context.h"
#include "model/linear.h"
#include "ops/ops.h"

namespace g4 {

std::string non_finite_weight(const Gemma4Model& model) {
  std::string found;
  Gemma4Weights& weights = const_cast<Gemma4Weights&>(model.weights);  // visited read-only
  for_each_parameter(model.config, weights, [&](const std::string& name, Tensor& t) {
    if (!found.empty()) return;
    const std::int64_t at = first_non_finite(t.bytes(), t.dtype(), t.numel());
    if (at >= 0) found = name + " (element " + std::to_string(at) + ")";
  });
  for (const LayerSpec& s : model.config.text.layers)
    if (found.empty() && !std::isfinite(model.weights.layers[s.index].layer_scalar))
      found = model.config.text_prefix + "layers." + std::to_string(s.index) + ".layer_scalar";
  return found;
}

LossResult batch_loss(const Gemma4Model&, const Batch& batch, const Tensor& logits) {
  return ops::causal_lm_loss(logits, batch.labels);
}

float embedding_scale(const TextConfig& c) {
  return static_cast<float>(std::sqrt(static_cast<double>(c.hidden_size)));
}

Tensor embed_tokens(const Gemma4Model& m, const Batch& batch) {
  return ops::embedding(m.weights.embed_tokens, batch.input_ids, embedding_scale(m.config.text),
                        "vocab_size");
}

Tensor per_layer_inputs(const Gemma4Model& m, const Batch& batch, const Tensor& embedded, Tensor* projected) {
  const TextConfig& c = m.config.text;
  const Gemma4Weights& w = m.weights;
  const std::int64_t T = batch.tokens(), H = c.hidden_size, L = c.num_hidden_layers,
                     P = c.hidden_size_per_layer_input;
  Tensor proj = Linear(w.per_layer_model_projection).forward(embedded).reshaped({T, L, P});
  ops::scale_(proj, static_cast<float>(1.0 / std::sqrt(static_cast<double>(H))));
  Tensor ple = ops::rms_norm(proj, w.per_layer_projection_norm, static_cast<float>(c.rms_norm_eps));
  const float token_scale = static_cast<float>(std::sqrt(static_cast<double>(P)));
  ops::add_(ple, ops::embedding(w.embed_tokens_per_layer, batch.input_ids, token_scale,
                                "vocab_size_per_layer_input"));
  ops::scale_(ple, static_cast<float>(1.0 / std::sqrt(2.0)));
  if (projected) *projected = std::move(proj);
  return ple;
}

Tensor final_logits(const Gemma4Model& m, const Tensor& x, std::int64_t B, std::int64_t S) {
  ScopedPhase phase("final norm + head");
  const TextConfig& c = m.config.text;
  // Logits in f32 whatever the compute dtype: the soft-cap and the loss read them in f32.
  Tensor logits =
      Linear(m.weights.head())
          .forward_to_f32(ops::rms_norm(x, m.weights.final_norm, static_cast<float>(c.rms_norm_eps)))
          .reshaped({B, S, c.vocab_size});
  if (c.final_logit_softcapping) ops::softcap_(logits, static_cast<float>(*c.final_logit_softcapping));
  return logits;
}

Tensor embed_multimodal(const Gemma4Model& m, const Batch& batch, const Tensor& soft_tokens,
                        Batch& text_ids) {
  const TextConfig& c = m.config.text;
  const std::int64_t T = batch.tokens();
  text_ids = batch;
  std::int64_t images = 0;
  for (std::int64_t t = 0; t < T; ++t)
    if (batch.mm_token_type[t]) text_ids.input_ids[t] = c.pad_token_id, ++images;
  const std::int64_t given = soft_tokens.empty() ? 0 : soft_tokens.dim(0);
  check(images == given, "the batch has ", images, " image placeholder tokens but the images give ", given,
        " soft tokens");
  Tensor x = embed_tokens(m, text_ids);
  std::int64_t used = 0;
  for_each_image_run(batch, [&](std::int64_t first, std::int64_t n) {
    Tensor rows = x.rows(first, n);
    ops::assign_(rows, soft_tokens.rows(used, n));
    used += n;
  });
  return x;
}

namespace {

// The decoder layers' output [T, H] (before the final norm); `hidden` (optional) receives the scaled
// embeddings and every layer's output as [B, S, H]; `cache` (optional) holds the sequences the batch
// continues; `image_tokens` the soft tokens of a multimodal batch's placeholders.
Tensor last_hidden(const Gemma4Model& m, const Batch& batch, std::vector<Tensor>* hidden,
                   AttentionCache* cache = nullptr, const Tensor* image_tokens = nullptr) {
  const TextConfig& c = m.config.text;
  const std::int64_t B = batch.batch_size, S = batch.seq_len, H = c.hidden_size;
  // Images: the per-layer inputs read the pad token's row of their table at the placeholders and project the
  // merged embeddings (soft tokens included), as transformers' Gemma4Model computes them.
  Batch text_ids;
  const bool multimodal = !batch.mm_token_type.empty();
  const Tensor x0 = multimodal ? embed_multimodal(m, batch, image_tokens ? *image_tokens : Tensor(), text_ids)
                               : embed_tokens(m, batch);
  Tensor x = x0;
  const Tensor ple = c.hidden_size_per_layer_input > 0
                         ? per_layer_inputs(m, multimodal ? text_ids : batch, x0, nullptr)
                         : Tensor();
  if (hidden) hidden->push_back(ops::copy(x).reshaped({B, S, H}));
  ForwardContext ctx = make_forward_context(c, batch);
  ctx.dispatcher = m.dispatcher;
  ctx.cache = cache;
  for (const LayerSpec& s : c.layers) {
    decoder_layer_forward(c, s, m.weights.layers[s.index], x, ple, ctx);
    if (hidden) hidden->push_back(ops::copy(x).reshaped({B, S, H}));
  }
  return x;
}

}  // namespace

ForwardResult gemma4_forward(const Gemma4Model& m, const Batch& batch, bool keep_hidden,
                             const Tensor* image_tokens) {
  ForwardResult result;
  const Tensor x = last_hidden(m, batch, keep_hidden ? &result.hidden : nullptr, nullptr, image_tokens);
  result.logits = final_logits(m, x, batch.batch_size, batch.seq_len);
  return result;
}

Tensor gemma4_extend(const Gemma4Model& m, const Batch& batch, AttentionCache& cache) {
  const Tensor x = last_hidden(m, batch, nullptr, &cache);
  const std::int64_t B = batch.batch_size, S = batch.seq_len;
  Tensor last = S == 1 ? x : ops::zeros({B, x.dim(1)}, x.device(), x.dtype());
  for (std::int64_t r = 0; S > 1 && r < B; ++r) {
    Tensor row = last.rows(r, 1);
    ops::assign_(row, x.rows(r * S + S - 1, 1));
  }
  return head_logits(
      m, ops::rms_norm(last, m.weights.final_norm, static_cast<float>(m.config.text.rms_norm_eps)));
}

std::int64_t head_chunk_rows(const TextConfig& c) {
  constexpr std::int64_t kHeadChunkElements = std::int64_t{1} << 26;  // 256 MiB of f32 logits
  return std::max<std::int64_t>(1, kHeadChunkElements / std::max<std::int64_t>(c.vocab_size, 1));
}

Tensor head_logits(const Gemma4Model& m, const Tensor& normed_rows) {
  const TextConfig& c = m.config.text;
  Tensor logits = Linear(m.weights.head()).forward_to_f32(normed_rows);
  if (c.final_logit_softcapping) ops::softcap_(logits, static_cast<float>(*c.final_logit_softcapping));
  return logits;
}

std::vector<std::int64_t> causal_lm_targets(const Batch& batch) {
  std::vector<std::int64_t> targets(static_cast<std::size_t>(batch.tokens()), kIgnoreIndex);
  for (std::int64_t p = 0; p < batch.tokens(); ++p)
    if (p % batch.seq_len + 1 < batch.seq_len)
      targets[static_cast<std::size_t>(p)] = batch.labels[static_cast<std::size_t>(p + 1)];
  return targets;
}

LossResult gemma4_loss(const Gemma4Model& m, const Batch& batch, std::int64_t chunk_rows,
                       const Tensor* image_tokens) {
  const Tensor x = last_hidden(m, batch, nullptr, nullptr, image_tokens);
  const Tensor normed =
      ops::rms_norm(x, m.weights.final_norm, static_cast<float>(m.config.text.rms_norm_eps));
  const std::vector<std::int64_t> targets = causal_lm_targets(batch);
  const std::span<const std::int64_t> all(targets);
  const std::int64_t T = x.dim(0), chunk = chunk_rows > 0 ? chunk_rows : head_chunk_rows(m.config.text);
  LossResult total;
  for (std::int64_t first = 0; first < T; first += chunk) {
    const std::int64_t n = std::min(chunk, T - first);
    const auto tc = all.subspan(static_cast<std::size_t>(first), static_cast<std::size_t>(n));
    if (std::all_of(tc.begin(), tc.end(), [](std::int64_t t) { return t == kIgnoreIndex; })) continue;
    const LossResult l = ops::token_loss(head_logits(m, normed.rows(first, n)), tc);
    total.loss_sum += l.loss_sum;
    total.num_tokens += l.num_tokens;
  }
  return total;
}

}  // namespace g4
