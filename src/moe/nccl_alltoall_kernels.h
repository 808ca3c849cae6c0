// nccl_alltoall_kernels.h: the device side of the GPU expert-parallel all-to-all
// (nccl_alltoall_dispatcher.h): which tokens go to which EP rank, packing their rows for the exchange, and
// the deterministic sums back at the source.
//
// Layout shared by every function here (P ranks, T local tokens, K choices):
// - expert ownership: rank p holds the global experts [first[p], first[p + 1]) (device int array [P + 1],
//   contiguous blocks as expert_range);
// - local_pos [P, T] (device int): the position of token t among the tokens this rank sends to rank p
//   (token order), or -1 when t is not sent to p. Token t is sent to p exactly once when it is live (mask
//   null or mask[t] != 0) and at least one of its K indices lies in p's block;
// - offsets [P] (device int64): the first row of rank p's block in the send layout (rank-major: rank order,
//   then token order). Row offsets[p] + local_pos[p, t] of the send layout is (p, t); the rows that come
//   back from the destinations use the same layout.
// All functions enqueue on `stream` and never synchronise; widths are multiples of 8 (16-byte rows).
#pragma once

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace g4::cuda {

// local_pos [P, T] and counts[p] = number of tokens sent to rank p (int64, device), then offsets[p] = the
// exclusive prefix sum of counts.
void ep_route(const int* indices, const std::uint8_t* mask, std::int64_t tokens, int top_k, int ranks,
              const int* first, int* local_pos, std::int64_t* counts, std::int64_t* offsets,
              cudaStream_t stream);

// For every sent (p, t), row r = offsets[p] + local_pos[p, t]: rows_out[r, :] = rows[t, :]; and when
// weights_out is not null, weights_out[r, k] = weights[t, k] and indices_out[r, k] = the local id of
// indices[t, k] on rank p (indices[t, k] - first[p]) when p owns it, else -1.
void ep_pack(const __nv_bfloat16* rows, const float* weights, const int* indices, std::int64_t tokens,
             int width, int top_k, int ranks, const int* first, const int* local_pos,
             const std::int64_t* offsets, __nv_bfloat16* rows_out, float* weights_out, int* indices_out,
             cudaStream_t stream);

// out[t, :] = bf16( sum over p ascending of back[offsets[p] + local_pos[p, t], :] ) in fp32 (the first
// term taken as is, so one destination returns its row bit for bit); 0 for a token sent nowhere.
void ep_combine_rows(const __nv_bfloat16* back, std::int64_t tokens, int width, int ranks,
                     const int* local_pos, const std::int64_t* offsets, __nv_bfloat16* out,
                     cudaStream_t stream);

// out[t, k] = back[(offsets[p] + local_pos[p, t]) * K + k] where p owns indices[t, k] and t was sent to p;
// else 0. Only the owner computes a slot's value: no sum, the value is returned exactly.
void ep_collect_slots(const float* back, const int* indices, std::int64_t tokens, int top_k, int ranks,
                      const int* first, const int* local_pos, const std::int64_t* offsets, float* out,
                      cudaStream_t stream);

}  // namespace g4::cuda
