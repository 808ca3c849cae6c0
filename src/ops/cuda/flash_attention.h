// flash_attention.h: memory-efficient attention (FlashAttention-2 style) on the GPU, forward and backward,
// over a per-row description of the visible keys (never an S×S matrix in memory).
//
// Layouts (bf16, contiguous): q and out [queries, Nq, D], k and v [keys, Nkv, D]; query head h reads KV head
// h / (Nq / Nkv) (GQA). Scaling 1.0 (Gemma 4: no 1/sqrt(D)). D is 256 or 512 (anything else: g4::Error).
// Tensor-core math (mma.sync m16n8k16 bf16, fp32 accumulation); softmax and dS in fp32; the probabilities are
// rounded to bf16 before the P·V and Pᵀ·dO products, as FlashAttention does.
//
// Only the key blocks a query block can see are visited (the forward and dQ kernels take the min first / max
// last over the block's rows; the dK/dV kernel takes, per key block, the range of query rows that see one of
// its keys, from a small precompute kernel), so a sliding window costs O(S·W) and causal attention ~S²/2.
// first/last need not be monotone.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace g4::cuda {

// What each query row sees, as device arrays: query i (0..queries-1) sees key j iff
// first[i] <= j <= last[i] and (key_mask == nullptr || key_mask[j] != 0). A row with first > last sees
// nothing. first/last are int64 device arrays [queries]; key_mask uint8 device array [keys] or nullptr.
struct FlashVisibility {
  std::int64_t queries = 0, keys = 0;
  const std::int64_t* first = nullptr;
  const std::int64_t* last = nullptr;
  const std::uint8_t* key_mask = nullptr;
};

// out [queries, Nq, D] bf16; lse [Nq, queries] fp32: the natural-log log-sum-exp of the row's visible scores,
// -inf for a row that sees nothing (whose out is exactly 0).
void flash_attention_forward(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                             const FlashVisibility& vis, int Nq, int Nkv, int D, __nv_bfloat16* out,
                             float* lse, cudaStream_t stream);

// dq [queries, Nq, D], dk and dv [keys, Nkv, D] bf16, all overwritten. Deterministic (no atomics): one kernel
// computes dK/dV per key block (looping over the query heads of its KV group and the query blocks that see
// it), another dQ per query block; both recompute P from `lse`. Rows that see nothing contribute nothing.
// Scratch (Nq·queries floats of rowsum(dO∘O) and the key blocks' query ranges) comes from cudaMallocAsync on
// `stream` and is freed there.
void flash_attention_backward(const __nv_bfloat16* q, const __nv_bfloat16* k, const __nv_bfloat16* v,
                              const __nv_bfloat16* out, const __nv_bfloat16* dout, const float* lse,
                              const FlashVisibility& vis, int Nq, int Nkv, int D, __nv_bfloat16* dq,
                              __nv_bfloat16* dk, __nv_bfloat16* dv, cudaStream_t stream);

// Device scratch the backward allocates itself (bytes), for callers that budget memory.
std::size_t flash_attention_backward_scratch_bytes(const FlashVisibility& vis, int Nq, int D);

}  // namespace g4::cuda
