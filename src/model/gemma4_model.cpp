#include "model/gemma4_model.h"

#include <cmath>

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

ForwardResult gemma4_forward(const Gemma4Model& m, const Batch& batch, bool keep_hidden) {
  const TextConfig& c = m.config.text;
  const std::int64_t B = batch.batch_size, S = batch.seq_len, H = c.hidden_size;
  ForwardResult result;
  Tensor x = embed_tokens(m, batch);
  if (keep_hidden) result.hidden.push_back(ops::copy(x).reshaped({B, S, H}));
  const Tensor ple = c.hidden_size_per_layer_input > 0 ? per_layer_inputs(m, batch, x, nullptr) : Tensor();
  ForwardContext ctx = make_forward_context(c, batch);
  ctx.dispatcher = m.dispatcher;
  for (const LayerSpec& s : c.layers) {
    decoder_layer_forward(c, s, m.weights.layers[s.index], x, ple, ctx);
    if (keep_hidden) result.hidden.push_back(ops::copy(x).reshaped({B, S, H}));
  }
  result.logits = final_logits(m, x, B, S);
  return result;
}

}  // namespace g4
