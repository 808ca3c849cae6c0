// moe_permute.h (CPU twin of ops/cuda/moe_permute.h): the grouping of (token, slot) routing assignments by
// local expert that the grouped GEMM needs (NeMo `_permute_tokens_for_grouped_mm`, the note's §4.3).
//
// Input: indices [T, K] of global expert ids (slot s = t·K + k), an optional token mask (0 = padding).
// Invariants of the result:
// - a slot takes part iff its token is valid and start ≤ indices[s] < start + n_local; padding tokens are
//   treated as index −1 and never routed (so are ids that are already negative);
// - rows are in a stable expert-major order: by local expert, then by slot (token-major, k-minor);
// - tokens_per_expert[e] counts the rows of local expert e; end_offsets = cumsum(tokens_per_expert) as int32
//   (the group end offsets torch._grouped_mm takes); end_offsets.back() == rows() when n_local > 0.
#pragma once

#include <cstdint>
#include <vector>

namespace g4 {

struct TokenPermutation {
  std::int64_t tokens = 0;
  std::int64_t top_k = 0;
  std::int64_t n_local = 0;
  std::int64_t start = 0;
  std::vector<std::int64_t> sorted_token_ids;   // [rows] token of each row
  std::vector<std::int64_t> sorted_slot_ids;    // [rows] slot t·K + k of each row
  std::vector<std::int64_t> tokens_per_expert;  // [n_local]
  std::vector<std::int32_t> end_offsets;        // [n_local]
  std::vector<std::int64_t> fill_cursor;        // scratch of the counting sort
  std::int64_t rows() const { return static_cast<std::int64_t>(sorted_token_ids.size()); }
};

// token_mask may be nullptr (every token valid). Reuses `out`'s buffers (no allocation once they are large
// enough). Throws g4::Error if the row count does not fit int32.
void moe_permute(const std::int64_t* indices, const std::uint8_t* token_mask, std::int64_t tokens,
                 std::int64_t top_k, std::int64_t n_local, std::int64_t start, TokenPermutation* out);

// sorted[r] = weights[sorted_slot_ids[r]]   (weights [T, K])
template <class T>
void gather_sorted_weights(const TokenPermutation& perm, const T* weights, T* sorted);

}  // namespace g4
