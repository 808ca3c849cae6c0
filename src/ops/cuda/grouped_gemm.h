// grouped_gemm.h: bf16 grouped GEMMs with fp32 accumulation over variable-size expert segments, with the
// segment sizes read on the device (no host round-trip).
//
// Segments: group g owns rows [offsets[g], offsets[g+1]) of the permuted row space (offsets is int32 [G+1] in
// device memory, offsets[0] = 0). All matrices are row-major; every leading dimension and every K, N, Mw, Nw
// must be a multiple of 8 (16-byte rows for cp.async). One kernel family serves every call
// (grouped_gemm_ws.h; the versions it replaced are measured and recorded in docs/perf-notes.md).
//
// Variable rows (forward and input-gradient GEMMs), for each group g and row r of its segment:
//   C[r, n] = sum_k A[r, k] * B_g(k, n),    A [rows, K] (lda), C [rows, N] (ldc), bf16 out, overwritten.
//   With a_rows (int32 [rows], device), A's row r is read from row a_rows[r] of a (a gather fused into the
//   load). B_g = B + g * b_group_stride, stored [K, N] (b_transposed = false) or [N, K] (b_transposed = true;
//   B_g^T used). tile_offsets (int32 [G+1], device): prefix sums of ceil(rows_g / grouped_gemm_block_m), from
//   moe_permute. max_rows bounds offsets[G] (the launch is sized from it).
// Variable K (weight-gradient GEMMs), for each group g:
//   C_g[m, n] (+)= sum_{r in segment g} A[r, m] * B[r, n],   A [rows, Mw] (lda), B [rows, Nw] (ldb),
//   C_g = C + g * Mw * Nw, fp32 (accumulate = true adds into it) or bf16 (overwritten).
//   With a_rows / b_rows, row r of A / B is read from row a_rows[r] / b_rows[r] (gathered operands).
//   A group with no rows writes zeros (or adds nothing).
#pragma once

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace g4::cuda {

inline constexpr int grouped_gemm_block_m = 128;  // rows per tile in the variable-rows GEMM

struct GroupedGemmRows {
  const __nv_bfloat16* a;
  std::int64_t lda;
  const int* a_rows;  // null: rows in place
  const __nv_bfloat16* b;
  std::int64_t b_group_stride;  // elements between B_g and B_{g+1}
  bool b_transposed;
  __nv_bfloat16* c;
  std::int64_t ldc;
  int k, n, groups;
  std::int64_t max_rows;
  const int* offsets;
  const int* tile_offsets;
};

struct GroupedGemmWeightGrad {
  const __nv_bfloat16* a;
  std::int64_t lda;
  const int* a_rows;  // null: rows in place
  const __nv_bfloat16* b;
  std::int64_t ldb;
  const int* b_rows;  // null: rows in place
  void* c;            // float* when c_is_fp32, else __nv_bfloat16*
  bool c_is_fp32;
  bool accumulate;  // only with c_is_fp32
  int mw, nw, groups;
  const int* offsets;
};

void grouped_gemm_rows(const GroupedGemmRows& args, cudaStream_t stream);
void grouped_gemm_weight_grad(const GroupedGemmWeightGrad& args, cudaStream_t stream);

}  // namespace g4::cuda
