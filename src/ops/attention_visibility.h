// attention_visibility.h: what each query of an attention sees (AttentionVisibility), and its per-row bounds
// (RowBounds): the backend-neutral description that ops.h's attention takes and both backends' kernels read
// (never a dense mask).
#pragma once

#include <cstdint>
#include <vector>

namespace g4 {

// Which keys each query sees. Query i sits at key position p = query_offset + i (query_offset = Sk - Sq when
// the queries are the last tokens of the keys, as with a KV cache; 0 for a whole sequence) and sees key j iff
//   j <= p (causal; without it every later key too),  j > p - window (window > 0: the window holds `window`
//   keys, the query's own included),
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
  bool causal = true;                      // false: later keys too (the vision encoder's bidirectional rows)
  // [Sk] or null: for a position inside a bidirectional block (an image's soft tokens), the block's last
  // position, else -1; a query inside a block also sees the block's later keys (the window still applies
  // to earlier ones).
  const std::int64_t* block_end = nullptr;
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

}  // namespace g4
