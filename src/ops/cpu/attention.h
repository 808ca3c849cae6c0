// attention.h: scaled-dot-product attention for one sequence on the CPU, over a description of what each
// query may see (never a dense mask).
//
// Layouts: q [Sq, Nq, D], out [Sq, Nq, D], k and v [Sk, Nkv, D]; query head h reads KV head h / (Nq / Nkv).
// Gemma 4 uses scaling 1.0 (q/k norms absorb it). Softmax in double. A query that sees no key gets a zero
// output (transformers' eager path would give a uniform average over masked keys there; such rows are padding
// and never reach a valid token).
#pragma once

#include <cstdint>
#include <vector>

#include "ops/attention_visibility.h"

namespace g4 {

void attention_forward(const float* q, const float* k, const float* v, const AttentionVisibility& visibility,
                       float* out, int num_q_heads, int num_kv_heads, int head_dim, float scaling = 1.0f);

// Backward of attention_forward (recomputes the probabilities): dq is overwritten; dk and dv accumulate (+=),
// so that KV-shared layers can add into their source's gradients.
void attention_backward(const float* q, const float* k, const float* v, const AttentionVisibility& visibility,
                        const float* dout, float* dq, float* dk, float* dv, int num_q_heads, int num_kv_heads,
                        int head_dim, float scaling = 1.0f);

}  // namespace g4
