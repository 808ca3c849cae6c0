// gemma4_training.h: one forward + backward pass of the Gemma 4 text model, on the weights' device and in
// their dtype (f32, or bf16 on a GPU; gradients f32).
//
// Gradients are those of loss = loss_sum / normaliser, where loss_sum is the summed causal-LM cross-entropy
// of this batch (labels shifted, -100 ignored) and normaliser is the number of label tokens in the whole
// global batch (all micro-batches, all ranks): pass it so that accumulation over micro-batches gives the
// same update as one large batch; 0 means "this batch's own count". Gradients accumulate (+=) into `grads`
// (shaped like the weights, see zeros_like), in the Hugging Face parametrisation. The head runs in chunks of
// positions (final norm, head, soft-cap, loss and their backward per chunk): f32 logits are never held for
// more than 2^26 elements at a time, whatever the sequence and vocabulary.
#pragma once

#include "model/gemma4_model.h"

namespace g4 {

struct StepResult {
  double loss_sum = 0;
  std::int64_t num_tokens = 0;
};

// `recompute`: keep only each layer's input during the forward and recompute the layer's activations just
// before its backward (one extra layer forward each, O(layers × tokens × hidden) memory instead of every
// layer's activations). The CPU forward is deterministic, so the recomputed routing and activations equal the
// first pass's bit for bit, and so do the gradients (tested).
// `head_chunk_rows` overrides the head's chunk (0: head_chunk_rows of the config), for tests.
// Images (batch.mm_token_type): `image_tokens` [n, H] are the soft tokens of the placeholders
// (gemma4_forward's), and `d_image_tokens` receives their gradient (overwritten; vision_backward takes it
// on).
StepResult gemma4_forward_backward(const Gemma4Model& model, const Batch& batch, Gemma4Weights& grads,
                                   double normaliser = 0, bool recompute = false,
                                   std::int64_t head_chunk_rows = 0, const Tensor* image_tokens = nullptr,
                                   Tensor* d_image_tokens = nullptr);

}  // namespace g4
