#include "ops/cpu/moe_permute.h"

#include <limits>

#include "core/error.h"

namespace g4 {

void moe_permute(const std::int64_t* indices, const std::uint8_t* token_mask, std::int64_t tokens,
                 std::int64_t top_k, std::int64_t n_local, std::int64_t start, TokenPermutation* out) {
  check(tokens >= 0 && top_k >= 0 && n_local >= 0 && start >= 0, "token permutation: negative size");
  out->tokens = tokens;
  out->top_k = top_k;
  out->n_local = n_local;
  out->start = start;
  out->tokens_per_expert.assign(static_cast<std::size_t>(n_local), 0);
  auto local_of = [&](std::int64_t slot) -> std::int64_t {
    const std::int64_t t = slot / top_k;
    if (token_mask && !token_mask[t]) return -1;
    const std::int64_t e = indices[slot] - start;
    return (indices[slot] >= 0 && e >= 0 && e < n_local) ? e : -1;
  };
  const std::int64_t slots = tokens * top_k;
  // Counting sort: stable by construction.
  for (std::int64_t s = 0; s < slots; ++s) {
    const std::int64_t e = local_of(s);
    if (e >= 0) ++out->tokens_per_expert[e];
  }
  std::int64_t rows = 0;
  out->end_offsets.resize(static_cast<std::size_t>(n_local));
  std::vector<std::int64_t>& cursor = out->fill_cursor;
  cursor.resize(static_cast<std::size_t>(n_local));
  for (std::int64_t e = 0; e < n_local; ++e) {
    cursor[e] = rows;
    rows += out->tokens_per_expert[e];
    check(rows <= std::numeric_limits<std::int32_t>::max(), "token permutation: ", rows,
          " routed rows do not fit the int32 group offsets");
    out->end_offsets[e] = static_cast<std::int32_t>(rows);
  }
  out->sorted_token_ids.resize(static_cast<std::size_t>(rows));
  out->sorted_slot_ids.resize(static_cast<std::size_t>(rows));
  for (std::int64_t s = 0; s < slots; ++s) {
    const std::int64_t e = local_of(s);
    if (e < 0) continue;
    const std::int64_t r = cursor[e]++;
    out->sorted_token_ids[r] = s / top_k;
    out->sorted_slot_ids[r] = s;
  }
}

template <class T>
void gather_sorted_weights(const TokenPermutation& perm, const T* weights, T* sorted) {
  for (std::int64_t r = 0; r < perm.rows(); ++r) sorted[r] = weights[perm.sorted_slot_ids[r]];
}

template void gather_sorted_weights<float>(const TokenPermutation&, const float*, float*);
template void gather_sorted_weights<double>(const TokenPermutation&, const double*, double*);

}  // namespace g4
