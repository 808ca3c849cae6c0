// cross_entropy.h: the final logit soft-cap and the causal-LM loss.
//
// Loss (transformers' ForCausalLMLoss): position t predicts labels[t + 1] (labels shifted left, the last
// position ignored); labels equal to -100 are ignored; the sum of -log softmax is divided by the number of
// counted tokens (or by `normaliser` when it is positive, for gradient accumulation over micro-batches).
#pragma once

#include <cstdint>

#include "ops/loss.h"

namespace g4 {

// In place: logits = tanh(logits / cap) · cap.
void softcap_forward(float* logits, std::int64_t count, float cap);

// logits [B, S, V]; labels [B, S] (unshifted, as in the input file).
LossResult causal_lm_loss(const float* logits, const std::int64_t* labels, std::int64_t B, std::int64_t S,
                          std::int64_t V);

// The same loss over logits [N, V] against explicit targets [N] (already shifted; -100 ignored): the
// vocabulary head in chunks of positions.
LossResult token_loss(const float* logits, const std::int64_t* targets, std::int64_t N, std::int64_t V);
void token_loss_backward(const float* logits, const std::int64_t* targets, float* dlogits, std::int64_t N,
                         std::int64_t V, double normaliser);

// Backward of softcap_forward, in place on the gradient: d logit = d capped · (1 - (capped / cap)²).
void softcap_backward(const float* capped, float* grad, std::int64_t count, float cap);

// d loss / d logits for loss = loss_sum / normaliser: (softmax - onehot(label)) / normaliser at counted
// positions, 0 elsewhere. dlogits [B, S, V] is overwritten.
void causal_lm_loss_backward(const float* logits, const std::int64_t* labels, float* dlogits, std::int64_t B,
                             std::int64_t S, std::int64_t V, double normaliser);

}  // namespace g4
