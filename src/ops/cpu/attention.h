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

namespace g4 {

// Which keys each query sees. Query i sits at key position p = query_offset + i (query_offset = Sk - Sq when
// the queries are the last tokens of the keys, as with a KV cache; 0 for a whole sequence) and sees key j iff
//   j <= p (causal),  j > p - window (window > 0: the window holds `window` keys, the query's own included),
//   segment[j] == segment[p] (packed sequences; segments are non-decreasing along the keys),
//   key_mask[j] != 0 (padding).
// Null pointers mean "no such restriction".
struct AttentionVisibility {
  std::int64_t queries = 0;                // Sq
  std::int64_t keys = 0;                   // Sk >= query_offset + Sq
  std::int64_t query_offset = 0;           // key position of query 0
  std::int64_t window = 0;                 // 0: unlimited
  const std::int64_t* segment = nullptr;   // [Sk]
  const std::uint8_t* key_mask = nullptr;  // [Sk]
};

// Per query row i, the first and last visible key (first = Sk, last = -1 when the row sees none). Every key
// between them is visible except those key_mask hides: causality, the window and the segment each cut one
// interval. Shared by the CPU and the CUDA attention.
struct RowBounds {
  std::vector<std::int64_t> first, last;
  const std::uint8_t* key_mask = nullptr;
  bool visible(std::int64_t i, std::int64_t j) const {
    return j >= first[i] && j <= last[i] && (!key_mask || key_mask[j]);
  }
};
RowBounds visible_row_bounds(const AttentionVisibility& visibility);

void attention_forward(const float* q, const float* k, const float* v, const AttentionVisibility& visibility,
                       float* out, int num_q_heads, int num_kv_heads, int head_dim, float scaling = 1.0f);

// Backward of attention_forward (recomputes the probabilities): dq is overwritten; dk and dv accumulate (+=),
// so that KV-shared layers can add into their source's gradients.
void attention_backward(const float* q, const float* k, const float* v, const AttentionVisibility& visibility,
                        const float* dout, float* dq, float* dk, float* dv, int num_q_heads, int num_kv_heads,
                        int head_dim, float scaling = 1.0f);

}  // namespace g4
