// gemma4_model.h: a loaded Gemma 4 text model (config + fp32 weights) and its forward pass on the CPU.
//
// The forward follows hf_transformers_gemma4.md §3 exactly, in fp32: embedding × sqrt(H) (in the compute
// dtype, fp32), per-layer inputs, decoder layers (§3.3 norm order), final norm, head, soft-cap.
#pragma once

#include <string>
#include <vector>

#include "core/batch.h"
#include "core/gemma4_config.h"
#include "core/tensor.h"
#include "model/attention_cache.h"
#include "model/gemma4_weights.h"
#include "moe/dispatcher.h"
#include "ops/loss.h"

namespace g4 {

struct Gemma4Model {
  ModelConfig config;
  Gemma4Weights weights;  // fp32, whatever the checkpoint's dtype
  // The dtype the weights were stored in (the checkpoint's float dtype when all its weights share one, else
  // f32): checkpoints written from this model use it again, so a bf16 model stays a bf16 checkpoint.
  DType storage_dtype = DType::f32;
  // The checkpoint's tensors outside the text model (vision and audio towers, embed_vision, embed_audio), as
  // stored (own dtype, host): checkpoints written from this model hold them unchanged, so fine-tuning the
  // language model of a vision-language checkpoint keeps its towers.
  std::vector<std::pair<std::string, Tensor>> carried;
  // How the MoE blocks reach their experts (not owned; moe/dispatcher.h), installed from outside the model
  // (train/, cli/: ParallelSetup::dispatcher); the weights hold its local_experts() only. nullptr: every
  // expert is here (moe/'s InProcessDispatcher).
  const Dispatcher<float>* dispatcher = nullptr;
};

// The first weight holding NaN or Inf, as "<name> (element <i>)", or "" when every weight is finite.
std::string non_finite_weight(const Gemma4Model& model);

struct ForwardResult {
  Tensor logits;  // [B, S, V], after the soft-cap
  std::vector<Tensor>
      hidden;  // when requested: [0] scaled embeddings, [1 + l] output of layer l; each [B, S, H]
};

// `image_tokens` [n, H]: the soft tokens of the batch's images (model/vision_tower.h), in the order of the
// batch's image placeholders (batch.mm_token_type); needed when the batch has any.
ForwardResult gemma4_forward(const Gemma4Model& model, const Batch& batch, bool keep_hidden = false,
                             const Tensor* image_tokens = nullptr);

// Generation: runs `batch` (B rows of S new tokens, row r continuing the sequence the cache maps it to, at
// the positions batch.position_ids gives) through the decoder, storing the new K/V in `cache`, and returns
// the soft-capped f32 logits [B, V] of each row's last token.
Tensor gemma4_extend(const Gemma4Model& model, const Batch& batch, AttentionCache& cache);

// The causal-LM loss of `logits` [B, S, V] for `batch`: logits[:, t] against labels[:, t + 1], -100 ignored;
// the sum over counted tokens and their number (the mean is sum / count).
LossResult batch_loss(const Gemma4Model& model, const Batch& batch, const Tensor& logits);

// Pieces of the forward shared with the training step.
float embedding_scale(const TextConfig& config);  // sqrt(H) rounded to fp32, the compute dtype
Tensor embed_tokens(const Gemma4Model& model, const Batch& batch);  // [T, H], scaled
// The input embeddings of a multimodal batch (batch.mm_token_type non-empty), as transformers' Gemma4Model
// builds them: placeholders looked up as the pad token, then replaced in order by the image soft tokens
// [n, H] (unscaled; a count that differs from the placeholders' is a g4::Error). `text_ids` gets the batch
// with the pad id at the placeholders: what the per-layer inputs' table is read at (E2B/E4B).
Tensor embed_multimodal(const Gemma4Model& model, const Batch& batch, const Tensor& image_tokens,
                        Batch& text_ids);
// Per-layer inputs [T, L, P] (§3.2): (RMSNorm_P(proj(e) · H^-0.5) + table[ids] · sqrt(P)) · 2^-0.5.
// `projected` (optional) receives proj(e) · H^-0.5, the norm's input.
Tensor per_layer_inputs(const Gemma4Model& model, const Batch& batch, const Tensor& embedded,
                        Tensor* projected);
Tensor final_logits(const Gemma4Model& model, const Tensor& x, std::int64_t B,
                    std::int64_t S);  // soft-capped

// The head in chunks of positions, which training and the loss-only forward share: never more than 2^26 f32
// logits at once.
std::int64_t head_chunk_rows(const TextConfig& config);
// softcap(rows · headᵀ) in f32 for rows of the final-normed last hidden state [n, H] (any compute dtype).
Tensor head_logits(const Gemma4Model& model, const Tensor& normed_rows);
// The label each position predicts: labels[p + 1] within its row, -100 at a row's last position.
std::vector<std::int64_t> causal_lm_targets(const Batch& batch);
// The loss of `batch` without its logits (the head in chunks, forward only): what evaluation needs.
// `chunk_rows` overrides head_chunk_rows (0: the default), for tests; `image_tokens` as gemma4_forward's.
LossResult gemma4_loss(const Gemma4Model& model, const Batch& batch, std::int64_t chunk_rows = 0,
                       const Tensor* image_tokens = nullptr);

}  // namespace g4
