// moe_permute.h: on-device token permutation for grouped experts (counts, offsets, stable order, gather) and
// the deterministic combine back to tokens.
//
// A slot is one (token t, choice k) pair, slot id s = t * K + k. A slot is live when mask is null or mask[t]
// != 0 and 0 <= indices[s] < E. Live slots are sorted by expert, stably (expert-major, then slot order), as
// NeMo's _permute_tokens_for_grouped_mm does; row i of the permuted space is one live slot. Outputs (all
// device memory, int32 unless stated):
//   offsets    [E + 1]   offsets[e] = first row of expert e; offsets[E] = number of live slots (M)
//   tile_offsets [E + 1] prefix sums of ceil(count_e / grouped_gemm_block_m) (for grouped_gemm_rows)
//   row_token  [T * K]   token of row i (rows >= M untouched)
//   row_weight [T * K]   fp32 routing weight of row i (rows >= M untouched)
//   slot_row   [T * K]   row of slot s, or -1 for a dead slot
// No host synchronisation: M stays on the device; consumers read offsets[E].
#pragma once

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace g4::cuda {

struct MoePermutation {
  int* offsets;
  int* tile_offsets;
  int* row_token;
  float* row_weight;
  int* slot_row;
};

// Scratch: chunk_counts needs moe_permute_scratch_ints(T, K, E) ints.
std::int64_t moe_permute_scratch_ints(std::int64_t tokens, int top_k, int experts);

void moe_permute(const int* indices, const float* weights, const std::uint8_t* mask, std::int64_t tokens,
                 int top_k, int experts, int* scratch, const MoePermutation& out, cudaStream_t stream);

// dst[i, :] = src[row_token[i], :] for rows i < offsets[E]; width multiple of 8. max_rows bounds the launch.
void moe_gather_rows(const __nv_bfloat16* src, const int* row_token, const int* offsets_end,
                     std::int64_t max_rows, int width, __nv_bfloat16* dst, cudaStream_t stream);

// out[t, :] = bf16( sum_k rows[slot_row[t*K+k], :] ) summed in fp32 in k order, skipping dead slots (0 if
// none). Deterministic: no atomics. width multiple of 8.
void moe_combine_rows(const __nv_bfloat16* rows, const int* slot_row, std::int64_t tokens, int top_k,
                      int width, __nv_bfloat16* out, cudaStream_t stream);

// out[t, k] = row_values[slot_row[t*K+k]] (0 for a dead slot): per-row scalars back to [T, K].
void moe_scatter_slot_values(const float* row_values, const int* slot_row, std::int64_t slots, float* out,
                             cudaStream_t stream);

}  // namespace g4::cuda
