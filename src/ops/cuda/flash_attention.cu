// flash_attention.cu: see flash_attention.h.
//
// Every kernel runs 8 warps (256 threads) over tiles held in shared memory (rows padded by 8 bf16 so that
// ldmatrix's eight 16-byte rows fall in distinct banks), loaded with cp.async (rows past the end are
// zero-filled, so no garbage or NaN enters a product). Matrix products are warp-level mma.sync m16n8k16
// (bf16 in, fp32 accumulate). The score tile of a step is split among the warps as 4 row groups of 16 × 2
// key halves; the output-like accumulators (O, dQ: 64 rows × D; dK, dV: key block × D) are split by columns,
// which keeps D = 512 within the register file (128 fp32 accumulators per thread).
//
// Tiles: 64 query rows everywhere; keys per tile 32, except the D = 512 forward (64, 223 KB of shared
// memory). At D = 256 two CTAs share an SM (≤ 128 registers, ≤ 113 KB each), at D = 512 one.
// Forward: per key tile S = QKᵀ to shared fp32, an online softmax (4 threads per row, running max and sum in
// registers), P (bf16) to shared memory, O = diag(α)·O + P·V; K(t+1) loads during softmax and P·V, V(t+1)
// during the next S. The dQ and dK/dV kernels compute dP before S, so that the second operand's tile
// arrives while the first product runs (see the comments at their loops).
// Known costs: the dQ kernel recomputes S and dP (the price of determinism without atomics: 7 products of
// S·D per row-key pair in the backward instead of 5); no wgmma/TMA.
#include "ops/cuda/flash_attention.h"

#include <cmath>
#include <cstdint>

#include "core/cuda/cuda_check.h"
#include "core/error.h"

namespace g4::cuda {

namespace {

using bf16 = __nv_bfloat16;

constexpr int kThreads = 256;
constexpr int kBlockQ = 64;  // query rows per tile, in every kernel
constexpr float kLog2e = 1.4426950408889634f;

// CTAs per SM the kernels are built for: at D = 256 two (≤ 128 registers per thread, ≤ 113 KB of shared
// memory each) so that one CTA's loads and barriers overlap the other's math; at D = 512 the 64 × 512 fp32
// accumulators need ~128 registers of their own, so one.
template <int D>
constexpr int kMinBlocks = D == 256 ? 2 : 1;

// ---- PTX wrappers ----

__device__ __forceinline__ std::uint32_t smem_addr(const void* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldsm_x4(std::uint32_t (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

__device__ __forceinline__ void ldsm_x4_trans(std::uint32_t (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// c += a · b for one m16n8k16 tile.
__device__ __forceinline__ void mma_bf16(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                         std::uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void cp_async_16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// ---- fragment addressing (lane-dependent pointers for ldmatrix.x4) ----

// A operand (16 rows × 16 k) from row-major [row][k] storage.
__device__ __forceinline__ const bf16* a_ptr(const bf16* s, int ld, int row0, int k0, int lane) {
  return s + (row0 + (lane & 15)) * ld + k0 + (lane >> 4) * 8;
}
// Two B n-tiles (n0..n0+15 × 16 k) from [n][k] storage: regs {0,1} tile n0, {2,3} tile n0+8.
__device__ __forceinline__ const bf16* b_nk_ptr(const bf16* s, int ld, int n0, int k0, int lane) {
  return s + (n0 + (lane & 7) + (lane >> 4) * 8) * ld + k0 + ((lane >> 3) & 1) * 8;
}
// Two B n-tiles from [k][n] storage, with ldmatrix.trans: regs {0,1} tile n0, {2,3} tile n0+8.
__device__ __forceinline__ const bf16* b_kn_ptr(const bf16* s, int ld, int k0, int n0, int lane) {
  return s + (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + n0 + (lane >> 4) * 8;
}

// Loads rows [r0, r0 + R) of a [rows_total, ld] bf16 matrix (row i at base + i * ld, D elements each) into
// shared [R][D + 8]; rows at or past rows_total are zero-filled.
template <int R, int D>
__device__ __forceinline__ void load_tile(bf16* dst, const bf16* base, std::int64_t ld, std::int64_t r0,
                                          std::int64_t rows_total, int tid) {
  constexpr int kChunks = D / 8;
  for (int c = tid; c < R * kChunks; c += kThreads) {
    const int r = c / kChunks, col = (c % kChunks) * 8;
    const bool valid = r0 + r < rows_total;
    const bf16* src = valid ? base + (r0 + r) * ld + col : base;
    cp_async_16(dst + r * (D + 8) + col, src, valid);
  }
}

// Reads the block's rows' first/last into shared memory (rows past the end see nothing) and returns the
// union [lo, hi] of their visible ranges through shared lo/hi (lo > hi: empty).
__device__ __forceinline__ void load_row_bounds(const std::int64_t* first, const std::int64_t* last,
                                                std::int64_t i0, std::int64_t Sq, std::int64_t Sk,
                                                std::int64_t* s_first, std::int64_t* s_last,
                                                std::int64_t* s_range, int tid) {
  if (tid < 32) {
    std::int64_t lo = Sk, hi = -1;
    for (int r = tid; r < kBlockQ; r += 32) {
      const std::int64_t i = i0 + r;
      std::int64_t f = 1, l = 0;
      if (i < Sq) f = first[i], l = last[i];
      if (f > l) f = 1, l = 0;
      s_first[r] = f;
      s_last[r] = l;
      if (f <= l) lo = min(lo, f), hi = max(hi, l);
    }
    for (int o = 16; o > 0; o >>= 1) {
      lo = min(lo, __shfl_xor_sync(0xffffffffu, lo, o));
      hi = max(hi, __shfl_xor_sync(0xffffffffu, hi, o));
    }
    if (tid == 0) s_range[0] = lo, s_range[1] = hi;
  }
}

__device__ __forceinline__ bool visible(std::int64_t j, std::int64_t f, std::int64_t l,
                                        const std::uint8_t* mask) {
  return j >= f && j <= l && (mask == nullptr || mask[j] != 0);
}

// acc (16 rows × BK / 2 columns of this warp) = A[wrow .. wrow + 15, :] · B[wkey .. wkey + BK / 2 - 1, :]ᵀ
// over the D columns of two [rows][D + 8] shared tiles.
template <int D, int BK>
__device__ __forceinline__ void score_tile(float (&acc)[BK / 16][4], const bf16* sA, const bf16* sB, int wrow,
                                           int wkey, int lane) {
  constexpr int ld = D + 8;
#pragma unroll
  for (int n = 0; n < BK / 16; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
#pragma unroll 4
  for (int kk = 0; kk < D / 16; ++kk) {
    std::uint32_t a[4];
    ldsm_x4(a, a_ptr(sA, ld, wrow, kk * 16, lane));
#pragma unroll
    for (int np = 0; np < BK / 32; ++np) {
      std::uint32_t b[4];
      ldsm_x4(b, b_nk_ptr(sB, ld, wkey + np * 16, kk * 16, lane));
      mma_bf16(acc[2 * np], a, b[0], b[1]);
      mma_bf16(acc[2 * np + 1], a, b[2], b[3]);
    }
  }
}

// ---- forward ----

template <int D, int BK>
struct FwdSmem {
  static constexpr int ld = D + 8, lds = BK + 4, ldp = BK + 8;
  static constexpr std::size_t q = 0, k = q + kBlockQ * ld * 2, v = k + BK * ld * 2, s = v + BK * ld * 2,
                               p = s + kBlockQ * lds * 4, alpha = p + kBlockQ * ldp * 2,
                               l = alpha + kBlockQ * 4, first = l + kBlockQ * 4, last = first + kBlockQ * 8,
                               range = last + kBlockQ * 8, bytes = range + 16;
};

template <int D, int BK>
__global__ void __launch_bounds__(kThreads, kMinBlocks<D>)
    flash_forward_kernel(const bf16* __restrict__ q, const bf16* __restrict__ k, const bf16* __restrict__ v,
                         const std::int64_t* __restrict__ first, const std::int64_t* __restrict__ last,
                         const std::uint8_t* __restrict__ mask, std::int64_t Sq, std::int64_t Sk, int Nq,
                         int Nkv, bf16* __restrict__ out, float* __restrict__ lse) {
  using L = FwdSmem<D, BK>;
  constexpr int ld = L::ld;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* sQ = reinterpret_cast<bf16*>(smem + L::q);
  bf16* sK = reinterpret_cast<bf16*>(smem + L::k);
  bf16* sV = reinterpret_cast<bf16*>(smem + L::v);
  float* sS = reinterpret_cast<float*>(smem + L::s);
  bf16* sP = reinterpret_cast<bf16*>(smem + L::p);
  float* sAlpha = reinterpret_cast<float*>(smem + L::alpha);
  float* sL = reinterpret_cast<float*>(smem + L::l);
  std::int64_t* sFirst = reinterpret_cast<std::int64_t*>(smem + L::first);
  std::int64_t* sLast = reinterpret_cast<std::int64_t*>(smem + L::last);
  std::int64_t* sRange = reinterpret_cast<std::int64_t*>(smem + L::range);

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int h = blockIdx.y, g = h / (Nq / Nkv);
  // Last query blocks first: under causal masking they see the most keys, and starting them first keeps
  // the tail of the grid short.
  const std::int64_t i0 = static_cast<std::int64_t>(gridDim.x - 1 - blockIdx.x) * kBlockQ;
  const std::int64_t ldq = static_cast<std::int64_t>(Nq) * D, ldk = static_cast<std::int64_t>(Nkv) * D;
  const bf16* qh = q + static_cast<std::int64_t>(h) * D;
  const bf16* kg = k + static_cast<std::int64_t>(g) * D;
  const bf16* vg = v + static_cast<std::int64_t>(g) * D;

  load_row_bounds(first, last, i0, Sq, Sk, sFirst, sLast, sRange, tid);
  load_tile<kBlockQ, D>(sQ, qh, ldq, i0, Sq, tid);
  __syncthreads();
  const std::int64_t lo = sRange[0], hi = sRange[1];
  const std::int64_t t0 = lo <= hi ? lo / BK : 0, t1 = lo <= hi ? hi / BK : -1;
  if (t0 <= t1) load_tile<BK, D>(sK, kg, ldk, t0 * BK, Sk, tid);
  cp_async_commit();
  if (t0 <= t1) load_tile<BK, D>(sV, vg, ldk, t0 * BK, Sk, tid);
  cp_async_commit();

  constexpr int kOutTiles = D / 16;  // n-tiles of 8 columns per warp: D / 2 columns
  float o[kOutTiles][4];
#pragma unroll
  for (int n = 0; n < kOutTiles; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  const int srow = tid >> 2, ssub = tid & 3;  // softmax: 4 threads per row
  const std::int64_t sf = sFirst[srow], sl = sLast[srow];
  float m_run = -INFINITY, l_run = 0.0f;
  const int wrow = (warp & 3) * 16;

  for (std::int64_t t = t0; t <= t1; ++t) {
    const std::int64_t j0 = t * BK;
    cp_async_wait<1>();
    __syncthreads();
    {  // S = Q Kᵀ: this warp's 16 rows × BK / 2 keys
      constexpr int kST = BK / 16;
      const int wkey = (warp >> 2) * (BK / 2);
      float s[kST][4];
#pragma unroll
      for (int n = 0; n < kST; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll 4
      for (int kk = 0; kk < D / 16; ++kk) {
        std::uint32_t a[4];
        ldsm_x4(a, a_ptr(sQ, ld, wrow, kk * 16, lane));
#pragma unroll
        for (int np = 0; np < kST / 2; ++np) {
          std::uint32_t b[4];
          ldsm_x4(b, b_nk_ptr(sK, ld, wkey + np * 16, kk * 16, lane));
          mma_bf16(s[2 * np], a, b[0], b[1]);
          mma_bf16(s[2 * np + 1], a, b[2], b[3]);
        }
      }
#pragma unroll
      for (int n = 0; n < kST; ++n) {
        const int r = wrow + (lane >> 2), c = wkey + n * 8 + 2 * (lane & 3);
        *reinterpret_cast<float2*>(&sS[r * L::lds + c]) = make_float2(s[n][0], s[n][1]);
        *reinterpret_cast<float2*>(&sS[(r + 8) * L::lds + c]) = make_float2(s[n][2], s[n][3]);
      }
    }
    __syncthreads();
    if (t < t1) load_tile<BK, D>(sK, kg, ldk, (t + 1) * BK, Sk, tid);
    cp_async_commit();
    {  // online softmax of row srow over this tile; P (bf16) to shared memory
      constexpr int kPer = BK / 4;
      float x[kPer];
      float mx = -INFINITY;
#pragma unroll
      for (int u = 0; u < kPer; ++u) {
        const int c = ssub + 4 * u;
        x[u] = visible(j0 + c, sf, sl, mask) ? sS[srow * L::lds + c] : -INFINITY;
        mx = fmaxf(mx, x[u]);
      }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m_run, mx);
      const float alpha = m_new == -INFINITY ? 1.0f : exp2f((m_run - m_new) * kLog2e);
      const float msub = m_new == -INFINITY ? 0.0f : m_new * kLog2e;
      float sum = 0.0f;
#pragma unroll
      for (int u = 0; u < kPer; ++u) {
        const bf16 p = __float2bfloat16(exp2f(fmaf(x[u], kLog2e, -msub)));
        sP[srow * L::ldp + ssub + 4 * u] = p;
        sum += __bfloat162float(p);
      }
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      l_run = l_run * alpha + sum;
      m_run = m_new;
      if (ssub == 0) sAlpha[srow] = alpha;
    }
    cp_async_wait<1>();
    __syncthreads();
    {  // O = diag(alpha) O + P V: this warp's 16 rows × D / 2 columns
      const int wcol = (warp >> 2) * (D / 2);
      const float a0 = sAlpha[wrow + (lane >> 2)], a1 = sAlpha[wrow + (lane >> 2) + 8];
#pragma unroll
      for (int n = 0; n < kOutTiles; ++n) o[n][0] *= a0, o[n][1] *= a0, o[n][2] *= a1, o[n][3] *= a1;
#pragma unroll
      for (int kk = 0; kk < BK / 16; ++kk) {
        std::uint32_t a[4];
        ldsm_x4(a, a_ptr(sP, L::ldp, wrow, kk * 16, lane));
#pragma unroll
        for (int np = 0; np < kOutTiles / 2; ++np) {
          std::uint32_t b[4];
          ldsm_x4_trans(b, b_kn_ptr(sV, ld, kk * 16, wcol + np * 16, lane));
          mma_bf16(o[2 * np], a, b[0], b[1]);
          mma_bf16(o[2 * np + 1], a, b[2], b[3]);
        }
      }
    }
    __syncthreads();
    if (t < t1) load_tile<BK, D>(sV, vg, ldk, (t + 1) * BK, Sk, tid);
    cp_async_commit();
  }
  cp_async_wait<0>();

  if (ssub == 0) {
    sL[srow] = l_run;
    const std::int64_t i = i0 + srow;
    if (i < Sq) lse[static_cast<std::int64_t>(h) * Sq + i] = l_run > 0.0f ? m_run + logf(l_run) : -INFINITY;
  }
  __syncthreads();
  const int wcol = (warp >> 2) * (D / 2);
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = wrow + (lane >> 2) + half * 8;
    const std::int64_t i = i0 + r;
    if (i >= Sq) continue;
    const float inv = sL[r] > 0.0f ? 1.0f / sL[r] : 0.0f;
    bf16* orow = out + i * ldq + static_cast<std::int64_t>(h) * D + wcol + 2 * (lane & 3);
#pragma unroll
    for (int n = 0; n < kOutTiles; ++n)
      *reinterpret_cast<__nv_bfloat162*>(orow + n * 8) =
          __floats2bfloat162_rn(o[n][2 * half] * inv, o[n][2 * half + 1] * inv);
  }
}

// ---- backward ----

// delta[h, i] = Σ_d dO[i, h, d] · O[i, h, d] (fp32), one warp per (row, head).
__global__ void flash_delta_kernel(const bf16* __restrict__ out, const bf16* __restrict__ dout,
                                   std::int64_t Sq, int Nq, int D, float* __restrict__ delta) {
  const std::int64_t w = static_cast<std::int64_t>(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (w >= Sq * Nq) return;
  const std::int64_t i = w / Nq;
  const int h = static_cast<int>(w % Nq);
  const bf16* o = out + w * D;
  const bf16* d = dout + w * D;
  float sum = 0.0f;
  for (int c = lane * 2; c < D; c += 64) {
    const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(o + c));
    const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(d + c));
    sum = fmaf(a.x, b.x, fmaf(a.y, b.y, sum));
  }
  for (int s = 16; s > 0; s >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, s);
  if (lane == 0) delta[static_cast<std::int64_t>(h) * Sq + i] = sum;
}

// Per key block of BK keys: the query blocks [lo, hi] (as int64 pair, lo > hi: none) holding a row that sees
// a key of the block (first/last only; the key mask is not consulted, which only adds zero work).
template <int BK>
__global__ void flash_query_range_kernel(const std::int64_t* __restrict__ first,
                                         const std::int64_t* __restrict__ last, std::int64_t Sq,
                                         std::int64_t Sk, std::int64_t* __restrict__ ranges) {
  const std::int64_t j0 = static_cast<std::int64_t>(blockIdx.x) * BK, j1 = min(Sk, j0 + BK) - 1;
  std::int64_t lo = Sq, hi = -1;
  for (std::int64_t i = threadIdx.x; i < Sq; i += kThreads) {
    const std::int64_t f = first[i], l = last[i];
    if (f <= l && f <= j1 && l >= j0) lo = min(lo, i), hi = max(hi, i);
  }
  for (int o = 16; o > 0; o >>= 1) {
    lo = min(lo, __shfl_xor_sync(0xffffffffu, lo, o));
    hi = max(hi, __shfl_xor_sync(0xffffffffu, hi, o));
  }
  __shared__ std::int64_t s_lo[kThreads / 32], s_hi[kThreads / 32];
  if ((threadIdx.x & 31) == 0) s_lo[threadIdx.x >> 5] = lo, s_hi[threadIdx.x >> 5] = hi;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kThreads / 32; ++w) lo = min(lo, s_lo[w]), hi = max(hi, s_hi[w]);
    ranges[2 * blockIdx.x] = lo <= hi ? lo / kBlockQ : 1;
    ranges[2 * blockIdx.x + 1] = lo <= hi ? hi / kBlockQ : 0;
  }
}

// dQ per (query block, query head): over the visible key tiles, S = Q Kᵀ and dP = dO Vᵀ (each warp 16 rows ×
// BK / 2 keys), P = exp(S − lse), dS = P ∘ (dP − delta) in registers, dS (bf16) to shared memory, then
// dQ += dS K (each warp 16 rows × D / 2 columns).
template <int D, int BK>
struct DqSmem {
  static constexpr int ld = D + 8, ldp = BK + 8;
  static constexpr std::size_t q = 0, dout = q + kBlockQ * ld * 2, k = dout + kBlockQ * ld * 2,
                               v = k + BK * ld * 2, ds = v + BK * ld * 2, lse = ds + kBlockQ * ldp * 2,
                               delta = lse + kBlockQ * 4, first = delta + kBlockQ * 4,
                               last = first + kBlockQ * 8, range = last + kBlockQ * 8, bytes = range + 16;
};

template <int D, int BK>
__global__ void __launch_bounds__(kThreads, kMinBlocks<D>)
    flash_dq_kernel(const bf16* __restrict__ q, const bf16* __restrict__ k, const bf16* __restrict__ v,
                    const bf16* __restrict__ dout, const float* __restrict__ lse,
                    const float* __restrict__ delta, const std::int64_t* __restrict__ first,
                    const std::int64_t* __restrict__ last, const std::uint8_t* __restrict__ mask,
                    std::int64_t Sq, std::int64_t Sk, int Nq, int Nkv, bf16* __restrict__ dq) {
  using L = DqSmem<D, BK>;
  constexpr int ld = L::ld;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* sQ = reinterpret_cast<bf16*>(smem + L::q);
  bf16* sdO = reinterpret_cast<bf16*>(smem + L::dout);
  bf16* sK = reinterpret_cast<bf16*>(smem + L::k);
  bf16* sV = reinterpret_cast<bf16*>(smem + L::v);
  bf16* sdS = reinterpret_cast<bf16*>(smem + L::ds);
  float* sLse = reinterpret_cast<float*>(smem + L::lse);
  float* sDelta = reinterpret_cast<float*>(smem + L::delta);
  std::int64_t* sFirst = reinterpret_cast<std::int64_t*>(smem + L::first);
  std::int64_t* sLast = reinterpret_cast<std::int64_t*>(smem + L::last);
  std::int64_t* sRange = reinterpret_cast<std::int64_t*>(smem + L::range);

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int h = blockIdx.y, g = h / (Nq / Nkv);
  // Last query blocks first: under causal masking they see the most keys, and starting them first keeps
  // the tail of the grid short.
  const std::int64_t i0 = static_cast<std::int64_t>(gridDim.x - 1 - blockIdx.x) * kBlockQ;
  const std::int64_t ldq = static_cast<std::int64_t>(Nq) * D, ldk = static_cast<std::int64_t>(Nkv) * D;
  const bf16* qh = q + static_cast<std::int64_t>(h) * D;
  const bf16* doh = dout + static_cast<std::int64_t>(h) * D;
  const bf16* kg = k + static_cast<std::int64_t>(g) * D;
  const bf16* vg = v + static_cast<std::int64_t>(g) * D;

  load_row_bounds(first, last, i0, Sq, Sk, sFirst, sLast, sRange, tid);
  if (tid < kBlockQ) {
    const std::int64_t i = i0 + tid;
    const std::int64_t at = static_cast<std::int64_t>(h) * Sq + i;
    sLse[tid] = i < Sq ? lse[at] * kLog2e : 0.0f;
    sDelta[tid] = i < Sq ? delta[at] : 0.0f;
  }
  load_tile<kBlockQ, D>(sQ, qh, ldq, i0, Sq, tid);
  load_tile<kBlockQ, D>(sdO, doh, ldq, i0, Sq, tid);
  __syncthreads();
  const std::int64_t lo = sRange[0], hi = sRange[1];
  const std::int64_t t0 = lo <= hi ? lo / BK : 0, t1 = lo <= hi ? hi / BK : -1;
  if (t0 <= t1) load_tile<BK, D>(sV, vg, ldk, t0 * BK, Sk, tid);
  cp_async_commit();  // with Q and dO
  if (t0 <= t1) load_tile<BK, D>(sK, kg, ldk, t0 * BK, Sk, tid);
  cp_async_commit();

  constexpr int kOutTiles = D / 16;
  float acc[kOutTiles][4];
#pragma unroll
  for (int n = 0; n < kOutTiles; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
  const int wrow = (warp & 3) * 16, wkey = (warp >> 2) * (BK / 2), wcol = (warp >> 2) * (D / 2);

  // Groups in flight at the top of step t: V(t), then K(t). dP (needs V) runs while K arrives; V(t + 1) loads
  // during S and dQ, K(t + 1) during the next dP.
  for (std::int64_t t = t0; t <= t1; ++t) {
    const std::int64_t j0 = t * BK;
    cp_async_wait<1>();
    __syncthreads();
    {
      constexpr int kST = BK / 16;
      float s[kST][4], dp[kST][4];
      score_tile<D, BK>(dp, sdO, sV, wrow, wkey, lane);  // dP = dO Vᵀ
      cp_async_wait<0>();                                // K(t)
      __syncthreads();                                   // ... and every warp is done with V(t)
      if (t < t1) load_tile<BK, D>(sV, vg, ldk, (t + 1) * BK, Sk, tid);
      cp_async_commit();
      score_tile<D, BK>(s, sQ, sK, wrow, wkey, lane);  // S = Q Kᵀ
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = wrow + (lane >> 2) + half * 8;
        const std::int64_t f = sFirst[r], l = sLast[r];
        const float ls = sLse[r], dl = sDelta[r];
#pragma unroll
        for (int n = 0; n < kST; ++n)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int c = wkey + n * 8 + 2 * (lane & 3) + e;
            const float p = visible(j0 + c, f, l, mask) ? exp2f(fmaf(s[n][2 * half + e], kLog2e, -ls)) : 0.0f;
            sdS[r * L::ldp + c] = __float2bfloat16(p * (dp[n][2 * half + e] - dl));
          }
      }
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {  // dQ += dS K
      std::uint32_t a[4];
      ldsm_x4(a, a_ptr(sdS, L::ldp, wrow, kk * 16, lane));
#pragma unroll
      for (int np = 0; np < kOutTiles / 2; ++np) {
        std::uint32_t b[4];
        ldsm_x4_trans(b, b_kn_ptr(sK, ld, kk * 16, wcol + np * 16, lane));
        mma_bf16(acc[2 * np], a, b[0], b[1]);
        mma_bf16(acc[2 * np + 1], a, b[2], b[3]);
      }
    }
    __syncthreads();
    if (t < t1) load_tile<BK, D>(sK, kg, ldk, (t + 1) * BK, Sk, tid);
    cp_async_commit();
  }
  cp_async_wait<0>();

#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = wrow + (lane >> 2) + half * 8;
    const std::int64_t i = i0 + r;
    if (i >= Sq) continue;
    bf16* row = dq + i * ldq + static_cast<std::int64_t>(h) * D + wcol + 2 * (lane & 3);
#pragma unroll
    for (int n = 0; n < kOutTiles; ++n)
      *reinterpret_cast<__nv_bfloat162*>(row + n * 8) =
          __floats2bfloat162_rn(acc[n][2 * half], acc[n][2 * half + 1]);
  }
}

// dK, dV per (key block of BK keys, KV head): for every query head of the group and every query block that
// sees the key block, S and dP (each warp 16 query rows × BK / 2 keys), P and dS in registers, stored
// transposed (bf16, [key][query]) to shared memory; then dV += Pᵀ dO and dK += dSᵀ Q, each warp owning all
// BK keys × D / 8 columns.
template <int D, int BK>
struct DkvSmem {
  static constexpr int ld = D + 8, ldt = kBlockQ + 8;
  static constexpr std::size_t k = 0, v = k + BK * ld * 2, q = v + BK * ld * 2, dout = q + kBlockQ * ld * 2,
                               pt = dout + kBlockQ * ld * 2, dst = pt + BK * ldt * 2,
                               lse = dst + BK * ldt * 2, delta = lse + kBlockQ * 4,
                               first = delta + kBlockQ * 4, last = first + kBlockQ * 8,
                               bytes = last + kBlockQ * 8;
};

template <int D, int BK>
__global__ void __launch_bounds__(kThreads, kMinBlocks<D>)
    flash_dkdv_kernel(const bf16* __restrict__ q, const bf16* __restrict__ k, const bf16* __restrict__ v,
                      const bf16* __restrict__ dout, const float* __restrict__ lse,
                      const float* __restrict__ delta, const std::int64_t* __restrict__ first,
                      const std::int64_t* __restrict__ last, const std::uint8_t* __restrict__ mask,
                      const std::int64_t* __restrict__ ranges, std::int64_t Sq, std::int64_t Sk, int Nq,
                      int Nkv, bf16* __restrict__ dk, bf16* __restrict__ dv) {
  using L = DkvSmem<D, BK>;
  constexpr int ld = L::ld, ldt = L::ldt;
  extern __shared__ __align__(16) unsigned char smem[];
  bf16* sK = reinterpret_cast<bf16*>(smem + L::k);
  bf16* sV = reinterpret_cast<bf16*>(smem + L::v);
  bf16* sQ = reinterpret_cast<bf16*>(smem + L::q);
  bf16* sdO = reinterpret_cast<bf16*>(smem + L::dout);
  bf16* sPt = reinterpret_cast<bf16*>(smem + L::pt);
  bf16* sdSt = reinterpret_cast<bf16*>(smem + L::dst);
  float* sLse = reinterpret_cast<float*>(smem + L::lse);
  float* sDelta = reinterpret_cast<float*>(smem + L::delta);
  std::int64_t* sFirst = reinterpret_cast<std::int64_t*>(smem + L::first);
  std::int64_t* sLast = reinterpret_cast<std::int64_t*>(smem + L::last);

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = blockIdx.y, group = Nq / Nkv;
  const std::int64_t j0 = static_cast<std::int64_t>(blockIdx.x) * BK;
  const std::int64_t ldq = static_cast<std::int64_t>(Nq) * D, ldk = static_cast<std::int64_t>(Nkv) * D;
  const std::int64_t qb0 = ranges[2 * blockIdx.x], qb1 = ranges[2 * blockIdx.x + 1];

  load_tile<BK, D>(sK, k + static_cast<std::int64_t>(g) * D, ldk, j0, Sk, tid);
  load_tile<BK, D>(sV, v + static_cast<std::int64_t>(g) * D, ldk, j0, Sk, tid);

  constexpr int kMT = BK / 16, kNT = D / 64;  // this warp: all BK keys × D / 8 columns
  float acc_dv[kMT][kNT][4], acc_dk[kMT][kNT][4];
#pragma unroll
  for (int m = 0; m < kMT; ++m)
#pragma unroll
    for (int n = 0; n < kNT; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc_dv[m][n][e] = acc_dk[m][n][e] = 0.0f;
  const int wrow = (warp & 3) * 16, wkey = (warp >> 2) * (BK / 2), wcol = warp * (D / 8);

  // One step per (query head of the group, query block that sees this key block). Groups in flight at the top
  // of a step: dO, then Q. dP (needs dO) runs while Q arrives; dO of the next step loads while this step
  // computes dK, Q of the next step while the next step computes dP.
  const std::int64_t blocks = qb0 <= qb1 ? qb1 - qb0 + 1 : 0, steps = group * blocks;
  const auto step_rows = [&](std::int64_t n, int& h, std::int64_t& i0) {
    h = g * group + static_cast<int>(n / blocks);
    i0 = (qb0 + n % blocks) * kBlockQ;
  };
  int h0 = 0;
  std::int64_t i00 = 0;
  if (steps > 0) step_rows(0, h0, i00);
  if (steps > 0) load_tile<kBlockQ, D>(sdO, dout + static_cast<std::int64_t>(h0) * D, ldq, i00, Sq, tid);
  cp_async_commit();  // with K and V
  if (steps > 0) load_tile<kBlockQ, D>(sQ, q + static_cast<std::int64_t>(h0) * D, ldq, i00, Sq, tid);
  cp_async_commit();
  for (std::int64_t step = 0; step < steps; ++step) {
    int h, h_next = 0;
    std::int64_t i0, i0_next = 0;
    step_rows(step, h, i0);
    if (step + 1 < steps) step_rows(step + 1, h_next, i0_next);
    if (tid < kBlockQ) {
      const std::int64_t i = i0 + tid;
      const std::int64_t at = static_cast<std::int64_t>(h) * Sq + i;
      std::int64_t f = 1, l = 0;
      if (i < Sq) f = first[i], l = last[i];
      sFirst[tid] = f;
      sLast[tid] = l;
      sLse[tid] = i < Sq ? lse[at] * kLog2e : 0.0f;
      sDelta[tid] = i < Sq ? delta[at] : 0.0f;
    }
    cp_async_wait<1>();  // dO(step) (and K, V); Q(step) may be in flight
    __syncthreads();
    {
      constexpr int kST = BK / 16;
      float s[kST][4], dp[kST][4];
      score_tile<D, BK>(dp, sdO, sV, wrow, wkey, lane);  // dP = dO Vᵀ
      cp_async_wait<0>();                                // Q(step)
      __syncthreads();
      score_tile<D, BK>(s, sQ, sK, wrow, wkey, lane);  // S = Q Kᵀ
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = wrow + (lane >> 2) + half * 8;
        const std::int64_t f = sFirst[r], l = sLast[r];
        const float ls = sLse[r], dl = sDelta[r];
#pragma unroll
        for (int n = 0; n < kST; ++n)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int c = wkey + n * 8 + 2 * (lane & 3) + e;
            const float p = visible(j0 + c, f, l, mask) ? exp2f(fmaf(s[n][2 * half + e], kLog2e, -ls)) : 0.0f;
            sPt[c * ldt + r] = __float2bfloat16(p);
            sdSt[c * ldt + r] = __float2bfloat16(p * (dp[n][2 * half + e] - dl));
          }
      }
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kBlockQ / 16; ++kk) {  // dV += Pᵀ dO
      std::uint32_t ap[kMT][4];
#pragma unroll
      for (int m = 0; m < kMT; ++m) ldsm_x4(ap[m], a_ptr(sPt, ldt, m * 16, kk * 16, lane));
#pragma unroll
      for (int np = 0; np < kNT / 2; ++np) {
        std::uint32_t bd[4];
        ldsm_x4_trans(bd, b_kn_ptr(sdO, ld, kk * 16, wcol + np * 16, lane));
#pragma unroll
        for (int m = 0; m < kMT; ++m) {
          mma_bf16(acc_dv[m][2 * np], ap[m], bd[0], bd[1]);
          mma_bf16(acc_dv[m][2 * np + 1], ap[m], bd[2], bd[3]);
        }
      }
    }
    __syncthreads();
    if (step + 1 < steps)
      load_tile<kBlockQ, D>(sdO, dout + static_cast<std::int64_t>(h_next) * D, ldq, i0_next, Sq, tid);
    cp_async_commit();
#pragma unroll
    for (int kk = 0; kk < kBlockQ / 16; ++kk) {  // dK += dSᵀ Q
      std::uint32_t ads[kMT][4];
#pragma unroll
      for (int m = 0; m < kMT; ++m) ldsm_x4(ads[m], a_ptr(sdSt, ldt, m * 16, kk * 16, lane));
#pragma unroll
      for (int np = 0; np < kNT / 2; ++np) {
        std::uint32_t bq[4];
        ldsm_x4_trans(bq, b_kn_ptr(sQ, ld, kk * 16, wcol + np * 16, lane));
#pragma unroll
        for (int m = 0; m < kMT; ++m) {
          mma_bf16(acc_dk[m][2 * np], ads[m], bq[0], bq[1]);
          mma_bf16(acc_dk[m][2 * np + 1], ads[m], bq[2], bq[3]);
        }
      }
    }
    __syncthreads();
    if (step + 1 < steps)
      load_tile<kBlockQ, D>(sQ, q + static_cast<std::int64_t>(h_next) * D, ldq, i0_next, Sq, tid);
    cp_async_commit();
  }
  cp_async_wait<0>();

#pragma unroll
  for (int m = 0; m < kMT; ++m)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const std::int64_t j = j0 + m * 16 + (lane >> 2) + half * 8;
      if (j >= Sk) continue;
      const std::int64_t at = j * ldk + static_cast<std::int64_t>(g) * D + wcol + 2 * (lane & 3);
#pragma unroll
      for (int n = 0; n < kNT; ++n) {
        *reinterpret_cast<__nv_bfloat162*>(dv + at + n * 8) =
            __floats2bfloat162_rn(acc_dv[m][n][2 * half], acc_dv[m][n][2 * half + 1]);
        *reinterpret_cast<__nv_bfloat162*>(dk + at + n * 8) =
            __floats2bfloat162_rn(acc_dk[m][n][2 * half], acc_dk[m][n][2 * half + 1]);
      }
    }
}

// ---- host side ----

void check_shapes(const FlashVisibility& vis, int Nq, int Nkv, int D, const char* what) {
  if (D != 256 && D != 512) fail(what, ": head_dim ", D, " is not supported (256 or 512)");
  if (Nq <= 0 || Nkv <= 0 || Nq % Nkv != 0)
    fail(what, ": ", Nq, " query heads are not a multiple of ", Nkv, " KV heads");
  if (vis.queries < 0 || vis.keys < 0) fail(what, ": negative sequence length");
  if (vis.queries > 0 && (vis.first == nullptr || vis.last == nullptr))
    fail(what, ": FlashVisibility has no first/last arrays");
  if ((vis.queries + kBlockQ - 1) / kBlockQ > 0x7fffffff)
    fail(what, ": ", vis.queries, " queries are too many");
}

// Tile sizes (keys per tile) of each kernel.
template <int D>
struct Tiles;
template <>
struct Tiles<256> {
  static constexpr int fwd = 32, dq = 32, dkv = 32;
};
template <>
struct Tiles<512> {
  static constexpr int fwd = 64, dq = 32, dkv = 32;
};

template <class Kernel>
void set_smem(Kernel kernel, std::size_t bytes) {
  G4_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

template <int D>
void forward_impl(const bf16* q, const bf16* k, const bf16* v, const FlashVisibility& vis, int Nq, int Nkv,
                  bf16* out, float* lse, cudaStream_t stream) {
  constexpr int BK = Tiles<D>::fwd;
  constexpr std::size_t bytes = FwdSmem<D, BK>::bytes;
  auto kernel = flash_forward_kernel<D, BK>;
  set_smem(kernel, bytes);
  const dim3 grid(static_cast<unsigned>((vis.queries + kBlockQ - 1) / kBlockQ), static_cast<unsigned>(Nq));
  kernel<<<grid, kThreads, bytes, stream>>>(q, k, v, vis.first, vis.last, vis.key_mask, vis.queries, vis.keys,
                                            Nq, Nkv, out, lse);
  G4_CUDA_CHECK_LAUNCH();
}

template <int D>
void backward_impl(const bf16* q, const bf16* k, const bf16* v, const bf16* out, const bf16* dout,
                   const float* lse, const FlashVisibility& vis, int Nq, int Nkv, bf16* dq, bf16* dk,
                   bf16* dv, cudaStream_t stream) {
  constexpr int BKQ = Tiles<D>::dq, BKV = Tiles<D>::dkv;
  const std::int64_t Sq = vis.queries, Sk = vis.keys;
  const std::int64_t key_blocks = (Sk + BKV - 1) / BKV;
  if (Sq == 0) {  // nothing sees any key: zero gradients
    if (Sk > 0) {
      const std::size_t n = static_cast<std::size_t>(Sk) * Nkv * D * sizeof(bf16);
      G4_CUDA_CHECK(cudaMemsetAsync(dk, 0, n, stream));
      G4_CUDA_CHECK(cudaMemsetAsync(dv, 0, n, stream));
    }
    return;
  }
  float* delta = nullptr;
  std::int64_t* ranges = nullptr;
  G4_CUDA_CHECK(
      cudaMallocAsync(reinterpret_cast<void**>(&delta), static_cast<std::size_t>(Sq) * Nq * 4, stream));
  G4_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&ranges),
                                static_cast<std::size_t>(key_blocks > 0 ? key_blocks : 1) * 16, stream));

  const std::int64_t rows = Sq * Nq;
  flash_delta_kernel<<<static_cast<unsigned>((rows + kThreads / 32 - 1) / (kThreads / 32)), kThreads, 0,
                       stream>>>(out, dout, Sq, Nq, D, delta);
  G4_CUDA_CHECK_LAUNCH();
  if (key_blocks > 0) {
    flash_query_range_kernel<BKV>
        <<<static_cast<unsigned>(key_blocks), kThreads, 0, stream>>>(vis.first, vis.last, Sq, Sk, ranges);
    G4_CUDA_CHECK_LAUNCH();
    constexpr std::size_t kv_bytes = DkvSmem<D, BKV>::bytes;
    auto kv_kernel = flash_dkdv_kernel<D, BKV>;
    set_smem(kv_kernel, kv_bytes);
    kv_kernel<<<dim3(static_cast<unsigned>(key_blocks), static_cast<unsigned>(Nkv)), kThreads, kv_bytes,
                stream>>>(q, k, v, dout, lse, delta, vis.first, vis.last, vis.key_mask, ranges, Sq, Sk, Nq,
                          Nkv, dk, dv);
    G4_CUDA_CHECK_LAUNCH();
  }
  constexpr std::size_t q_bytes = DqSmem<D, BKQ>::bytes;
  auto q_kernel = flash_dq_kernel<D, BKQ>;
  set_smem(q_kernel, q_bytes);
  q_kernel<<<dim3(static_cast<unsigned>((Sq + kBlockQ - 1) / kBlockQ), static_cast<unsigned>(Nq)), kThreads,
             q_bytes, stream>>>(q, k, v, dout, lse, delta, vis.first, vis.last, vis.key_mask, Sq, Sk, Nq, Nkv,
                                dq);
  G4_CUDA_CHECK_LAUNCH();
  G4_CUDA_CHECK(cudaFreeAsync(delta, stream));
  G4_CUDA_CHECK(cudaFreeAsync(ranges, stream));
}

}  // namespace

void flash_attention_forward(const bf16* q, const bf16* k, const bf16* v, const FlashVisibility& vis, int Nq,
                             int Nkv, int D, bf16* out, float* lse, cudaStream_t stream) {
  check_shapes(vis, Nq, Nkv, D, "flash_attention_forward");
  if (vis.queries == 0) return;
  if (D == 256)
    forward_impl<256>(q, k, v, vis, Nq, Nkv, out, lse, stream);
  else
    forward_impl<512>(q, k, v, vis, Nq, Nkv, out, lse, stream);
}

void flash_attention_backward(const bf16* q, const bf16* k, const bf16* v, const bf16* out, const bf16* dout,
                              const float* lse, const FlashVisibility& vis, int Nq, int Nkv, int D, bf16* dq,
                              bf16* dk, bf16* dv, cudaStream_t stream) {
  check_shapes(vis, Nq, Nkv, D, "flash_attention_backward");
  if (D == 256)
    backward_impl<256>(q, k, v, out, dout, lse, vis, Nq, Nkv, dq, dk, dv, stream);
  else
    backward_impl<512>(q, k, v, out, dout, lse, vis, Nq, Nkv, dq, dk, dv, stream);
}

std::size_t flash_attention_backward_scratch_bytes(const FlashVisibility& vis, int Nq, int D) {
  const int bk = D == 512 ? Tiles<512>::dkv : Tiles<256>::dkv;
  return static_cast<std::size_t>(vis.queries) * Nq * 4 +
         static_cast<std::size_t>((vis.keys + bk - 1) / bk) * 16;
}

}  // namespace g4::cuda
