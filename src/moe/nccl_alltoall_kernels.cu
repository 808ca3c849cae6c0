// nccl_alltoall_kernels.cu: routing, packing and combining for the GPU expert-parallel all-to-all (see
// nccl_alltoall_kernels.h). No atomics: every output element is written by one thread, sums run in a fixed
// order.
#include "moe/nccl_alltoall_kernels.h"

#include "core/cuda/cuda_check.h"
#include "core/error.h"

namespace g4::cuda {
namespace {

using bf16 = __nv_bfloat16;
constexpr int ROUTE_THREADS = 256;  // one token per thread per chunk; 8 warps
constexpr int ROW_THREADS = 128;    // 16-byte column chunks of one row

// True when token t is live and one of its choices lies in [lo, hi).
__device__ __forceinline__ bool goes_to(const int* indices, const std::uint8_t* mask, std::int64_t t,
                                        int top_k, int lo, int hi) {
  if (mask != nullptr && mask[t] == 0) return false;
  for (int k = 0; k < top_k; ++k) {
    int e = indices[t * top_k + k];
    if (e >= lo && e < hi) return true;
  }
  return false;
}

// One block per destination rank p: a block-wide exclusive scan of the "sent to p" flags over the tokens,
// chunk by chunk, so positions follow token order.
__global__ void route_kernel(const int* indices, const std::uint8_t* mask, std::int64_t tokens, int top_k,
                             const int* first, int* local_pos, std::int64_t* counts) {
  __shared__ int warp_sums[ROUTE_THREADS / 32];
  const int p = blockIdx.x, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int lo = first[p], hi = first[p + 1];
  int* pos_p = local_pos + static_cast<std::int64_t>(p) * tokens;
  int running = 0;  // tokens sent to p before this chunk
  for (std::int64_t base = 0; base < tokens; base += ROUTE_THREADS) {
    const std::int64_t t = base + threadIdx.x;
    const int flag = t < tokens && goes_to(indices, mask, t, top_k, lo, hi) ? 1 : 0;
    int incl = flag;  // inclusive scan within the warp
    for (int d = 1; d < 32; d *= 2) {
      int v = __shfl_up_sync(0xffffffffu, incl, d);
      if (lane >= d) incl += v;
    }
    if (lane == 31) warp_sums[warp] = incl;
    __syncthreads();
    int before = running;
    int chunk_total = 0;
    for (int w = 0; w < ROUTE_THREADS / 32; ++w) {
      if (w < warp) before += warp_sums[w];
      chunk_total += warp_sums[w];
    }
    if (t < tokens) pos_p[t] = flag ? before + incl - 1 : -1;
    running += chunk_total;
    __syncthreads();  // warp_sums is rewritten by the next chunk
  }
  if (threadIdx.x == 0) counts[p] = running;
}

__global__ void offsets_kernel(const std::int64_t* counts, int ranks, std::int64_t* offsets) {
  std::int64_t at = 0;
  for (int p = 0; p < ranks; ++p) {
    offsets[p] = at;
    at += counts[p];
  }
}

// One block per token: its row (and routing, when weights_out is set) to every rank it goes to.
__global__ void pack_kernel(const bf16* rows, const float* weights, const int* indices, std::int64_t tokens,
                            int width, int top_k, int ranks, const int* first, const int* local_pos,
                            const std::int64_t* offsets, bf16* rows_out, float* weights_out,
                            int* indices_out) {
  const std::int64_t t = blockIdx.x;
  const uint4* from = reinterpret_cast<const uint4*>(rows + t * width);
  for (int p = 0; p < ranks; ++p) {
    const int pos = local_pos[static_cast<std::int64_t>(p) * tokens + t];
    if (pos < 0) continue;
    const std::int64_t r = offsets[p] + pos;
    uint4* to = reinterpret_cast<uint4*>(rows_out + r * width);
    for (int c = threadIdx.x; c < width / 8; c += blockDim.x) to[c] = from[c];
    if (weights_out != nullptr)
      for (int k = threadIdx.x; k < top_k; k += blockDim.x) {
        const int e = indices[t * top_k + k];
        weights_out[r * top_k + k] = weights[t * top_k + k];
        indices_out[r * top_k + k] = (e >= first[p] && e < first[p + 1]) ? e - first[p] : -1;
      }
  }
}

__global__ void combine_kernel(const bf16* back, std::int64_t tokens, int width, int ranks,
                               const int* local_pos, const std::int64_t* offsets, bf16* out) {
  const std::int64_t t = blockIdx.x;
  for (int c = threadIdx.x; c < width / 8; c += blockDim.x) {
    float acc[8] = {};
    bool any = false;
    for (int p = 0; p < ranks; ++p) {
      const int pos = local_pos[static_cast<std::int64_t>(p) * tokens + t];
      if (pos < 0) continue;
      const uint4 v = reinterpret_cast<const uint4*>(back + (offsets[p] + pos) * width)[c];
      const bf16* h = reinterpret_cast<const bf16*>(&v);
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[i] = any ? acc[i] + __bfloat162float(h[i]) : __bfloat162float(h[i]);
      any = true;
    }
    uint4 o;
    bf16* ho = reinterpret_cast<bf16*>(&o);
#pragma unroll
    for (int i = 0; i < 8; ++i) ho[i] = __float2bfloat16_rn(acc[i]);
    reinterpret_cast<uint4*>(out + t * width)[c] = o;
  }
}

__global__ void collect_kernel(const float* back, const int* indices, std::int64_t tokens, int top_k,
                               int ranks, const int* first, const int* local_pos, const std::int64_t* offsets,
                               float* out) {
  const std::int64_t s = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (s >= tokens * top_k) return;
  const std::int64_t t = s / top_k;
  const int e = indices[s];
  float v = 0.0f;
  for (int p = 0; p < ranks; ++p) {
    if (e < first[p] || e >= first[p + 1]) continue;
    const int pos = local_pos[static_cast<std::int64_t>(p) * tokens + t];
    if (pos >= 0) v = back[(offsets[p] + pos) * top_k + s % top_k];
    break;
  }
  out[s] = v;
}

unsigned grid_of(std::int64_t blocks) {
  check(blocks < (1ll << 31), "expert-parallel kernels: ", blocks, " blocks is too many");
  return static_cast<unsigned>(blocks);
}

}  // namespace

void ep_route(const int* indices, const std::uint8_t* mask, std::int64_t tokens, int top_k, int ranks,
              const int* first, int* local_pos, std::int64_t* counts, std::int64_t* offsets,
              cudaStream_t stream) {
  check(ranks >= 1, "ep_route: ", ranks, " ranks");
  route_kernel<<<ranks, ROUTE_THREADS, 0, stream>>>(indices, mask, tokens, top_k, first, local_pos, counts);
  G4_CUDA_CHECK_LAUNCH();
  offsets_kernel<<<1, 1, 0, stream>>>(counts, ranks, offsets);
  G4_CUDA_CHECK_LAUNCH();
}

void ep_pack(const bf16* rows, const float* weights, const int* indices, std::int64_t tokens, int width,
             int top_k, int ranks, const int* first, const int* local_pos, const std::int64_t* offsets,
             bf16* rows_out, float* weights_out, int* indices_out, cudaStream_t stream) {
  check(width % 8 == 0, "ep_pack: width ", width, " not a multiple of 8");
  if (tokens == 0) return;
  pack_kernel<<<grid_of(tokens), ROW_THREADS, 0, stream>>>(rows, weights, indices, tokens, width, top_k,
                                                           ranks, first, local_pos, offsets, rows_out,
                                                           weights_out, indices_out);
  G4_CUDA_CHECK_LAUNCH();
}

void ep_combine_rows(const bf16* back, std::int64_t tokens, int width, int ranks, const int* local_pos,
                     const std::int64_t* offsets, bf16* out, cudaStream_t stream) {
  check(width % 8 == 0, "ep_combine_rows: width ", width, " not a multiple of 8");
  if (tokens == 0) return;
  combine_kernel<<<grid_of(tokens), ROW_THREADS, 0, stream>>>(back, tokens, width, ranks, local_pos, offsets,
                                                              out);
  G4_CUDA_CHECK_LAUNCH();
}

void ep_collect_slots(const float* back, const int* indices, std::int64_t tokens, int top_k, int ranks,
                      const int* first, const int* local_pos, const std::int64_t* offsets, float* out,
                      cudaStream_t stream) {
  const std::int64_t slots = tokens * top_k;
  if (slots == 0) return;
  collect_kernel<<<grid_of((slots + 255) / 256), 256, 0, stream>>>(back, indices, tokens, top_k, ranks, first,
                                                                   local_pos, offsets, out);
  G4_CUDA_CHECK_LAUNCH();
}

}  // namespace g4::cuda
