// grouped_gemm_wgmma.cu: grouped GEMMs on Hopper's warpgroup MMA (wgmma.mma_async, bf16 -> fp32).
//
// CTA tile 128 x BN x 64 (BN 128 or 256), two consumer warpgroups of 64 rows each, all 256 threads loading
// with cp.async into 128-byte-swizzled shared tiles, STAGES deep. Per k-tile: wait for its data, fence the
// async proxy, barrier, issue 4 wgmma (k16 each) on it, then issue the loads of the k-tile STAGES-2 ahead
// while the wgmma runs, then wait for the wgmma. Shared layouts (bytes; c = 16-byte chunk, swizzled as c ^
// (row % 8)):
//   K-major tile  [rows][64 k]:          row * 128 + ((c ^ row % 8) * 16)                 (SBO 1024, LBO
//   unused) MN-major tile [64 k][mn in blocks of 64]: blk * 8192 + k * 128 + ((c ^ k % 8) * 16)     (SBO
//   1024, LBO 8192)
// Out-of-range rows/columns are zero-filled by cp.async (src-size 0), as in the mma.sync version.
#include "ops/cuda/grouped_gemm_wgmma.h"

#include <cstdint>

#include "core/cuda/cuda_check.h"
#include "ops/cuda/grouped_tiles.h"
#include "ops/cuda/wgmma_instructions.h"

namespace g4::cuda {
namespace {

using bf16 = __nv_bfloat16;
constexpr int BM = 128, BK = 64, THREADS = 256;
constexpr int TILE_BYTES_PER_64 = 64 * 128;  // a 64 x 64 bf16 block: 8 KiB

__device__ __forceinline__ void cp_async16(std::uint32_t smem, const void* gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem), "l"(gmem), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Address of memory row `row` of an operand: base + row * ld, or base + rows[row] * ld when it is gathered.
__device__ __forceinline__ const bf16* row_ptr(const bf16* base, std::int64_t ld, const int* rows, int row) {
  return base +
         (rows != nullptr ? static_cast<std::int64_t>(rows[row]) : static_cast<std::int64_t>(row)) * ld;
}

// K-major tile of ROWS memory rows x 64 k starting at column k0; rows >= rows_left or k >= k_end are zeros.
template <int ROWS>
__device__ __forceinline__ void load_kmajor(std::uint32_t s, const bf16* base, std::int64_t ld,
                                            const int* rows, int rows_left, int k0, int k_end) {
  constexpr int chunks = ROWS * 8;
#pragma unroll
  for (int i = 0; i < chunks / THREADS; ++i) {
    int idx = static_cast<int>(threadIdx.x) + i * THREADS;
    int r = idx >> 3, c = idx & 7;
    bool ok = r < rows_left && k0 + c * 8 < k_end;
    cp_async16(s + r * 128 + ((c ^ (r & 7)) << 4), ok ? row_ptr(base, ld, rows, r) + k0 + c * 8 : base, ok);
  }
}

// MN-major tile of 64 k-rows (memory rows k0 ..) x MN columns; k-rows >= k_end or columns >= mn_left are
// zeros.
template <int MN>
__device__ __forceinline__ void load_mnmajor(std::uint32_t s, const bf16* base, std::int64_t ld,
                                             const int* rows, int k0, int k_end, int mn_left) {
  constexpr int cpr = MN / 8;  // chunks per k-row
  constexpr int chunks = 64 * cpr;
#pragma unroll
  for (int i = 0; i < chunks / THREADS; ++i) {
    int idx = static_cast<int>(threadIdx.x) + i * THREADS;
    int k = idx / cpr, c = idx % cpr;
    bool ok = k0 + k < k_end && c * 8 < mn_left;
    int blk = c >> 3, cc = c & 7;
    cp_async16(s + blk * TILE_BYTES_PER_64 + k * 128 + ((cc ^ (k & 7)) << 4),
               ok ? row_ptr(base, ld, rows, k0 + k) + c * 8 : base, ok);
  }
}

// Descriptor of a 128-byte-swizzled tile at shared address addr: LBO 8 KiB (next 64-wide MN block; unused for
// K-major), SBO 1 KiB (next group of 8 rows).
__device__ __forceinline__ std::uint64_t smem_desc(std::uint32_t addr) {
  return ((addr & 0x3FFFFu) >> 4) | (static_cast<std::uint64_t>(TILE_BYTES_PER_64 >> 4) << 16) |
         (static_cast<std::uint64_t>(1024 >> 4) << 32) | (1ull << 62);
}

template <int BN, bool A_KMAJOR, bool B_KMAJOR>
struct Layout {
  static constexpr int a_bytes = BM * BK * 2, b_bytes = BN * BK * 2;
  static constexpr int stage_bytes = a_bytes + b_bytes;
};

template <int BN>
struct Acc {
  float d[BN / 2];
};

// acc += A(m, k) B(k, n) over k in [0, K) for the tile's m, n. An operand is (base, ld, rows): memory row j
// is base + j * ld, or base + rows[j] * ld when rows is not null (gathered rows); base already points at the
// tile's first column. K-major operands have their M (N) rows as memory rows; MN-major ones their k.
template <int BN, int STAGES, bool IN_FLIGHT, bool A_KMAJOR, bool B_KMAJOR>
__device__ __forceinline__ void mainloop(Acc<BN>& acc, std::uint32_t smem, const bf16* A, std::int64_t lda,
                                         const int* a_rows, int rows_a, const bf16* B, std::int64_t ldb,
                                         const int* b_rows, int rows_b, int K) {
  using L = Layout<BN, A_KMAJOR, B_KMAJOR>;
  const int wg = static_cast<int>(threadIdx.x) / 128;
  const int ktiles = (K + BK - 1) / BK;
  auto load_stage = [&](int stage, int kt) {
    std::uint32_t sa = smem + stage * L::stage_bytes, sb = sa + L::a_bytes;
    int k0 = kt * BK;
    if constexpr (A_KMAJOR)
      load_kmajor<BM>(sa, A, lda, a_rows, rows_a, k0, K);
    else
      load_mnmajor<BM>(sa, A, lda, a_rows, k0, K, rows_a);
    if constexpr (B_KMAJOR)
      load_kmajor<BN>(sb, B, ldb, b_rows, rows_b, k0, K);
    else
      load_mnmajor<BN>(sb, B, ldb, b_rows, k0, K, rows_b);
  };
  // Tile t lives in slot t % STAGES. Two schedules:
  //  - IN_FLIGHT = false (version 3): loads run STAGES - 1 tiles ahead and each warpgroup waits for its own
  //  batch
  //    (wait_group 0) before the next barrier; the slot refilled in iteration kt is the one batch kt - 1
  //    read.
  //  - IN_FLIGHT = true (version 4/5): loads run STAGES - 2 tiles ahead and one batch stays queued behind the
  //  one
  //    executing (wait_group 1); the slot refilled in iteration kt is the one batch kt - 2 read, which every
  //    warpgroup finished before the barrier (it waited with wait_group 1 at the end of iteration kt - 1).
  constexpr int LOOKAHEAD = IN_FLIGHT ? STAGES - 2 : STAGES - 1;
  static_assert(LOOKAHEAD >= 1, "too few stages");
#pragma unroll
  for (int s = 0; s < LOOKAHEAD; ++s) {
    if (s < ktiles) load_stage(s, s);
    cp_async_commit();
  }
  for (int kt = 0; kt < ktiles; ++kt) {
    cp_async_wait<LOOKAHEAD - 1>();
    wgmma::fence_proxy_async();
    __syncthreads();
    std::uint32_t sa = smem + (kt % STAGES) * L::stage_bytes, sb = sa + L::a_bytes;
    // This warpgroup's 64 rows of A: K-major rows [64 wg, 64 wg + 64) or MN-major block wg; both 8 KiB in.
    std::uint32_t a_base = sa + wg * TILE_BYTES_PER_64;
    wgmma::fence();
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
      std::uint32_t a_addr = a_base + (A_KMAJOR ? kk * 32 : kk * 16 * 128);
      std::uint32_t b_addr = sb + (B_KMAJOR ? kk * 32 : kk * 16 * 128);
      std::uint64_t da = smem_desc(a_addr), db = smem_desc(b_addr);
      if constexpr (BN == 128)
        wgmma::wgmma_m64n128k16<A_KMAJOR ? 0 : 1, B_KMAJOR ? 0 : 1>(acc.d, da, db, kt > 0 || kk > 0);
      else
        wgmma::wgmma_m64n256k16<A_KMAJOR ? 0 : 1, B_KMAJOR ? 0 : 1>(acc.d, da, db, kt > 0 || kk > 0);
    }
    wgmma::commit();
    int next = kt + LOOKAHEAD;
    if (next < ktiles) load_stage(next % STAGES, next);
    cp_async_commit();
    wgmma::wait<IN_FLIGHT ? 1 : 0>();
  }
  wgmma::wait<0>();
  cp_async_wait<0>();
}

__device__ __forceinline__ std::uint32_t aligned_smem_base() {
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  std::uint32_t base = static_cast<std::uint32_t>(__cvta_generic_to_shared(smem_raw));
  return (base + 1023u) & ~1023u;  // swizzled tiles must start on 1024-byte boundaries
}

// Accumulator element i of this thread: row (within the warpgroup's 64) and column (within BN).
__device__ __forceinline__ int acc_row(int i) {
  int warp = (static_cast<int>(threadIdx.x) % 128) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  return warp * 16 + lane / 4 + ((i >> 1) & 1) * 8;
}
__device__ __forceinline__ int acc_col(int i) {
  int lane = static_cast<int>(threadIdx.x) % 32;
  return (i >> 2) * 8 + (lane % 4) * 2;
}

template <int BN, int STAGES, bool IN_FLIGHT, bool B_KMAJOR>
__global__ void __launch_bounds__(THREADS, BN == 128 ? 2 : 1) rows_kernel(GroupedGemmRows p) {
  const int ntiles_n = (p.n + BN - 1) / BN;
  const int tile = static_cast<int>(blockIdx.x) / ntiles_n;
  const int tn = static_cast<int>(blockIdx.x) % ntiles_n;
  if (tile >= p.tile_offsets[p.groups]) return;
  const int g = group_of_tile(p.tile_offsets, p.groups, tile);
  const int row0 = p.offsets[g] + (tile - p.tile_offsets[g]) * BM;
  const int rows = p.offsets[g + 1] - row0;
  const int n0 = tn * BN;
  const bf16* Bg = p.b + g * p.b_group_stride;
  const bf16* B = B_KMAJOR ? Bg + static_cast<std::int64_t>(n0) * p.k : Bg + n0;
  const std::int64_t ldb = B_KMAJOR ? p.k : p.n;

  Acc<BN> acc;  // written by the first wgmma (accumulate = 0): K >= 8, so there is at least one k-tile
  const bf16* A = p.a_rows != nullptr ? p.a : p.a + row0 * p.lda;
  const int* a_rows = p.a_rows != nullptr ? p.a_rows + row0 : nullptr;
  mainloop<BN, STAGES, IN_FLIGHT, true, B_KMAJOR>(acc, aligned_smem_base(), A, p.lda, a_rows, rows, B, ldb,
                                                  nullptr, p.n - n0, p.k);

  const int wg = static_cast<int>(threadIdx.x) / 128;
#pragma unroll
  for (int i = 0; i < BN / 2; i += 2) {
    int r = wg * 64 + acc_row(i);
    int n = n0 + acc_col(i);
    if (r < rows && n < p.n)
      *reinterpret_cast<__nv_bfloat162*>(p.c + (row0 + r) * p.ldc + n) =
          __floats2bfloat162_rn(acc.d[i], acc.d[i + 1]);
  }
}

template <int BN, int STAGES, bool IN_FLIGHT, bool FP32_OUT, bool ACCUMULATE>
__global__ void __launch_bounds__(THREADS, BN == 128 ? 2 : 1) weight_grad_kernel(GroupedGemmWeightGrad p) {
  const int ntiles_n = (p.nw + BN - 1) / BN, ntiles_m = (p.mw + BM - 1) / BM;
  const int per_group = ntiles_n * ntiles_m;
  const int g = static_cast<int>(blockIdx.x) / per_group;
  const int t = static_cast<int>(blockIdx.x) % per_group;
  const int m0 = (t / ntiles_n) * BM, n0 = (t % ntiles_n) * BN;
  const int r0 = p.offsets[g], kcount = p.offsets[g + 1] - r0;

  Acc<BN> acc;
  if (kcount == 0) {
#pragma unroll
    for (int i = 0; i < BN / 2; ++i) acc.d[i] = 0.0f;
  } else {
    const bf16* A = p.a_rows != nullptr ? p.a + m0 : p.a + r0 * p.lda + m0;
    const bf16* B = p.b_rows != nullptr ? p.b + n0 : p.b + r0 * p.ldb + n0;
    const int* a_rows = p.a_rows != nullptr ? p.a_rows + r0 : nullptr;
    const int* b_rows = p.b_rows != nullptr ? p.b_rows + r0 : nullptr;
    mainloop<BN, STAGES, IN_FLIGHT, false, false>(acc, aligned_smem_base(), A, p.lda, a_rows, p.mw - m0, B,
                                                  p.ldb, b_rows, p.nw - n0, kcount);
  }

  const int wg = static_cast<int>(threadIdx.x) / 128;
  const std::int64_t base = static_cast<std::int64_t>(g) * p.mw * p.nw;
#pragma unroll
  for (int i = 0; i < BN / 2; i += 2) {
    int m = m0 + wg * 64 + acc_row(i);
    int n = n0 + acc_col(i);
    if (m >= p.mw || n >= p.nw) continue;
    std::int64_t at = base + static_cast<std::int64_t>(m) * p.nw + n;
    float v0 = acc.d[i], v1 = acc.d[i + 1];
    if constexpr (FP32_OUT) {
      float2* c = reinterpret_cast<float2*>(static_cast<float*>(p.c) + at);
      if constexpr (ACCUMULATE) {
        float2 old = *c;
        v0 += old.x;
        v1 += old.y;
      }
      *c = make_float2(v0, v1);
    } else {
      *reinterpret_cast<__nv_bfloat162*>(static_cast<bf16*>(p.c) + at) = __floats2bfloat162_rn(v0, v1);
    }
  }
}

template <int BN, int STAGES>
constexpr int smem_bytes() {
  return STAGES * (BM * BK * 2 + BN * BK * 2) + 1024;
}

template <class Kernel>
void launch(Kernel kernel, std::int64_t blocks, int smem, cudaStream_t stream, const auto& args) {
  check(blocks < (1ll << 31), "grouped GEMM too large: ", blocks, " blocks (ops/cuda/grouped_gemm_wgmma.cu)");
  if (blocks == 0) return;
  G4_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  kernel<<<static_cast<unsigned>(blocks), THREADS, smem, stream>>>(args);
  G4_CUDA_CHECK_LAUNCH();
}

}  // namespace

// Schedules: 128 x 128 tiles, 3 stages (97 KiB, 2 CTAs/SM), wait_group 0 (version 3) or wait_group 1 (version
// 5); 128 x 256 tiles, 4 stages (193 KiB, 1 CTA/SM), wait_group 0.
template <int BN, int STAGES, bool IN_FLIGHT>
void rows_bn(const GroupedGemmRows& a, cudaStream_t stream) {
  std::int64_t blocks = ((a.max_rows + BM - 1) / BM + a.groups) * ((a.n + BN - 1) / BN);
  if (a.b_transposed)
    launch(rows_kernel<BN, STAGES, IN_FLIGHT, true>, blocks, smem_bytes<BN, STAGES>(), stream, a);
  else
    launch(rows_kernel<BN, STAGES, IN_FLIGHT, false>, blocks, smem_bytes<BN, STAGES>(), stream, a);
}

void grouped_gemm_rows_wgmma(const GroupedGemmRows& a, WgmmaSchedule schedule, cudaStream_t stream) {
  if (schedule == WgmmaSchedule::wide)
    rows_bn<256, 4, false>(a, stream);
  else if (schedule == WgmmaSchedule::in_flight)
    rows_bn<128, 3, true>(a, stream);
  else
    rows_bn<128, 3, false>(a, stream);
}

template <int BN, int STAGES, bool IN_FLIGHT>
void weight_grad_bn(const GroupedGemmWeightGrad& a, cudaStream_t stream) {
  std::int64_t blocks = static_cast<std::int64_t>(a.groups) * ((a.mw + BM - 1) / BM) * ((a.nw + BN - 1) / BN);
  constexpr int smem = smem_bytes<BN, STAGES>();
  if (!a.c_is_fp32)
    launch(weight_grad_kernel<BN, STAGES, IN_FLIGHT, false, false>, blocks, smem, stream, a);
  else if (a.accumulate)
    launch(weight_grad_kernel<BN, STAGES, IN_FLIGHT, true, true>, blocks, smem, stream, a);
  else
    launch(weight_grad_kernel<BN, STAGES, IN_FLIGHT, true, false>, blocks, smem, stream, a);
}

void grouped_gemm_weight_grad_wgmma(const GroupedGemmWeightGrad& a, WgmmaSchedule schedule,
                                    cudaStream_t stream) {
  if (schedule == WgmmaSchedule::wide)
    weight_grad_bn<256, 4, false>(a, stream);
  else if (schedule == WgmmaSchedule::in_flight)
    weight_grad_bn<128, 3, true>(a, stream);
  else
    weight_grad_bn<128, 3, false>(a, stream);
}

}  // namespace g4::cuda
