// attention.h: scaled-dot-product attention for one sequence on the CPU, with an explicit visibility mask.
//
// Layouts: q [S, Nq, D], k and v [S, Nkv, D], out [S, Nq, D]; query head h reads KV head h / (Nq / Nkv).
// mask [S, S]: mask[i*S + j] != 0 iff query i may see key j. Gemma 4 uses scaling 1.0 (q/k norms absorb
// it). Softmax in double. A query that sees no key gets a zero output (transformers' eager path would give a
// uniform average over masked keys there; such rows are padding and never reach a valid token).
#pragma once

#include <cstdint>

namespace g4 {

void attention_forward(const float* q, const float* k, const float* v, const std::uint8_t* mask, float* out,
                       std::int64_t S, int num_q_heads, int num_kv_heads, int head_dim, float scaling = 1.0f);

// Backward of attention_forward (recomputes the probabilities): dq is overwritten; dk and dv accumulate (+=),
// so that KV-shared layers can add into their source's gradients.
void attention_backward(const float* q, const float* k, const float* v, const std::uint8_t* mask,
                        const float* dout, float* dq, float* dk, float* dv, std::int64_t S, int num_q_heads,
                        int num_kv_heads, int head_dim, float scaling = 1.0f);

}  // namespace g4
