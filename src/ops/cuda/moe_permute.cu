// moe_permute.cu: a stable counting sort of live slots by expert in three launches (per-chunk histograms, one
// scan block, stable placement with warp match), plus row gather, combine and per-slot scatter.
#include "ops/cuda/moe_permute.h"

#include "core/cuda/cuda_check.h"
#include "ops/cuda/grouped_gemm.h"

namespace g4::cuda {
namespace {

using bf16 = __nv_bfloat16;
constexpr int CHUNK = 256;  // slots per block in the histogram and placement kernels (one per thread)

__device__ __forceinline__ int live_expert(const int* indices, const std::uint8_t* mask, std::int64_t slot,
                                           std::int64_t slots, int top_k, int experts) {
  if (slot >= slots) return -1;
  if (mask != nullptr && mask[slot / top_k] == 0) return -1;
  int e = indices[slot];
  return (e >= 0 && e < experts) ? e : -1;
}

// chunk_counts[b * E + e] = live slots of expert e in chunk b.
__global__ void histogram_kernel(const int* indices, const std::uint8_t* mask, std::int64_t slots, int top_k,
                                 int experts, int* chunk_counts) {
  extern __shared__ int hist[];
  for (int e = threadIdx.x; e < experts; e += blockDim.x) hist[e] = 0;
  __syncthreads();
  std::int64_t s = static_cast<std::int64_t>(blockIdx.x) * CHUNK + threadIdx.x;
  int e = live_expert(indices, mask, s, slots, top_k, experts);
  if (e >= 0) atomicAdd(&hist[e], 1);
  __syncthreads();
  for (int x = threadIdx.x; x < experts; x += blockDim.x) chunk_counts[blockIdx.x * experts + x] = hist[x];
}

// One block, one thread per expert: turns chunk counts into chunk bases (in place) and writes offsets.
__global__ void scan_kernel(int* chunk_counts, int chunks, int experts, int* offsets, int* tile_offsets,
                            int bm) {
  extern __shared__ int totals[];
  int e = threadIdx.x;
  int running = 0;
  if (e < experts) {
    for (int b = 0; b < chunks; ++b) {
      int c = chunk_counts[b * experts + e];
      chunk_counts[b * experts + e] = running;
      running += c;
    }
    totals[e] = running;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int off = 0, toff = 0;
    for (int x = 0; x < experts; ++x) {
      offsets[x] = off;
      tile_offsets[x] = toff;
      off += totals[x];
      toff += (totals[x] + bm - 1) / bm;
      totals[x] = offsets[x];
    }
    offsets[experts] = off;
    tile_offsets[experts] = toff;
  }
  __syncthreads();
  if (e < experts)
    for (int b = 0; b < chunks; ++b) chunk_counts[b * experts + e] += totals[e];
}

// Places each live slot at its chunk base + its rank among same-expert slots earlier in the chunk.
__global__ void place_kernel(const int* indices, const float* weights, const std::uint8_t* mask,
                             std::int64_t slots, int top_k, int experts, const int* chunk_base,
                             MoePermutation out) {
  constexpr int WARPS = CHUNK / 32;
  extern __shared__ int warp_counts[];  // [WARPS][experts]
  for (int x = threadIdx.x; x < WARPS * experts; x += blockDim.x) warp_counts[x] = 0;
  __syncthreads();
  std::int64_t s = static_cast<std::int64_t>(blockIdx.x) * CHUNK + threadIdx.x;
  int e = live_expert(indices, mask, s, slots, top_k, experts);
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  unsigned peers = __match_any_sync(0xffffffffu, e);
  int rank = __popc(peers & ((1u << lane) - 1));
  if (e >= 0 && rank == 0) warp_counts[warp * experts + e] = __popc(peers);
  __syncthreads();
  if (s < slots) {
    if (e < 0) {
      out.slot_row[s] = -1;
    } else {
      int pos = chunk_base[blockIdx.x * experts + e] + rank;
      for (int w = 0; w < warp; ++w) pos += warp_counts[w * experts + e];
      out.slot_row[s] = pos;
      out.row_token[pos] = static_cast<int>(s / top_k);
      out.row_weight[pos] = weights[s];
    }
  }
}

__global__ void gather_rows_kernel(const bf16* src, const int* row_token, const int* offsets_end, int width,
                                   bf16* dst) {
  std::int64_t row = blockIdx.x;
  if (row >= *offsets_end) return;
  const uint4* from = reinterpret_cast<const uint4*>(src + static_cast<std::int64_t>(row_token[row]) * width);
  uint4* to = reinterpret_cast<uint4*>(dst + row * width);
  for (int c = threadIdx.x; c < width / 8; c += blockDim.x) to[c] = from[c];
}

__global__ void combine_rows_kernel(const bf16* rows, const int* slot_row, int top_k, int width, bf16* out) {
  std::int64_t t = blockIdx.x;
  for (int c = threadIdx.x; c < width / 8; c += blockDim.x) {
    float acc[8] = {};
    for (int k = 0; k < top_k; ++k) {
      int r = slot_row[t * top_k + k];
      if (r < 0) continue;
      uint4 v = reinterpret_cast<const uint4*>(rows + static_cast<std::int64_t>(r) * width)[c];
      const bf16* h = reinterpret_cast<const bf16*>(&v);
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[i] += __bfloat162float(h[i]);
    }
    uint4 o;
    bf16* ho = reinterpret_cast<bf16*>(&o);
#pragma unroll
    for (int i = 0; i < 8; ++i) ho[i] = __float2bfloat16_rn(acc[i]);
    reinterpret_cast<uint4*>(out + t * width)[c] = o;
  }
}

__global__ void scatter_slot_values_kernel(const float* row_values, const int* slot_row, std::int64_t slots,
                                           float* out) {
  std::int64_t s = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (s >= slots) return;
  int r = slot_row[s];
  out[s] = r < 0 ? 0.0f : row_values[r];
}

int row_threads(int width) {
  int chunks = width / 8;
  int t = 32;
  while (t < chunks && t < 256) t *= 2;
  return t;
}

}  // namespace

std::int64_t moe_permute_scratch_ints(std::int64_t tokens, int top_k, int experts) {
  return (tokens * top_k + CHUNK - 1) / CHUNK * experts;
}

void moe_permute(const int* indices, const float* weights, const std::uint8_t* mask, std::int64_t tokens,
                 int top_k, int experts, int* scratch, const MoePermutation& out, cudaStream_t stream) {
  check(experts > 0 && experts <= 1024, "moe_permute: expert count ", experts, " outside 1..1024");
  std::int64_t slots = tokens * top_k;
  int chunks = static_cast<int>((slots + CHUNK - 1) / CHUNK);
  if (chunks == 0) {
    G4_CUDA_CHECK(cudaMemsetAsync(out.offsets, 0, (experts + 1) * sizeof(int), stream));
    G4_CUDA_CHECK(cudaMemsetAsync(out.tile_offsets, 0, (experts + 1) * sizeof(int), stream));
    return;
  }
  histogram_kernel<<<chunks, CHUNK, experts * sizeof(int), stream>>>(indices, mask, slots, top_k, experts,
                                                                     scratch);
  G4_CUDA_CHECK_LAUNCH();
  int scan_threads = (experts + 31) / 32 * 32;
  scan_kernel<<<1, scan_threads, experts * sizeof(int), stream>>>(scratch, chunks, experts, out.offsets,
                                                                  out.tile_offsets, grouped_gemm_block_m);
  G4_CUDA_CHECK_LAUNCH();
  place_kernel<<<chunks, CHUNK, (CHUNK / 32) * experts * sizeof(int), stream>>>(indices, weights, mask, slots,
                                                                                top_k, experts, scratch, out);
  G4_CUDA_CHECK_LAUNCH();
}

void moe_gather_rows(const bf16* src, const int* row_token, const int* offsets_end, std::int64_t max_rows,
                     int width, bf16* dst, cudaStream_t stream) {
  check(width % 8 == 0, "moe_gather_rows: width ", width, " not a multiple of 8");
  if (max_rows == 0) return;
  gather_rows_kernel<<<static_cast<unsigned>(max_rows), row_threads(width), 0, stream>>>(
      src, row_token, offsets_end, width, dst);
  G4_CUDA_CHECK_LAUNCH();
}

void moe_combine_rows(const bf16* rows, const int* slot_row, std::int64_t tokens, int top_k, int width,
                      bf16* out, cudaStream_t stream) {
  check(width % 8 == 0, "moe_combine_rows: width ", width, " not a multiple of 8");
  if (tokens == 0) return;
  combine_rows_kernel<<<static_cast<unsigned>(tokens), row_threads(width), 0, stream>>>(rows, slot_row, top_k,
                                                                                        width, out);
  G4_CUDA_CHECK_LAUNCH();
}

void moe_scatter_slot_values(const float* row_values, const int* slot_row, std::int64_t slots, float* out,
                             cudaStream_t stream) {
  if (slots == 0) return;
  scatter_slot_values_kernel<<<static_cast<unsigned>((slots + 255) / 256), 256, 0, stream>>>(
      row_values, slot_row, slots, out);
  G4_CUDA_CHECK_LAUNCH();
}

}  // namespace g4::cuda
