// grouped_gemm.cu: the dispatch between the Hopper wgmma kernels (grouped_gemm_ws.cu, the default, and
// grouped_gemm_wgmma.cu) and the portable mma.sync kernels here (m16n8k16 bf16 -> fp32, ldmatrix, 4-stage
// cp.async pipeline; version 1).
//
// One CTA computes one BM x BN output tile of one group; warps hold 64 x 64 sub-tiles (4 x 8 mma tiles each).
// Operands are staged in shared memory in their global orientation (rows padded by 16 bytes so ldmatrix is
// free of bank conflicts); K-major operands are read with ldmatrix, MN-major ones with ldmatrix.trans.
// Out-of-range rows and columns are zero-filled by cp.async (src-size 0), so tails need no special path.
#include "ops/cuda/grouped_gemm.h"

#include <cstdlib>

#include "core/cuda/cuda_check.h"
#include "ops/cuda/grouped_gemm_wgmma.h"
#include "ops/cuda/grouped_tiles.h"

namespace g4::cuda {
namespace {

using bf16 = __nv_bfloat16;
constexpr int BK = 32;
constexpr int PAD = 8;  // bf16 elements of padding per shared-memory row (16 bytes)

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  int bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const bf16* p) {
  unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const bf16* p) {
  unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
__device__ __forceinline__ void mma_bf16(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Copies an R x C tile into s ([R][C + PAD]): tile row r is memory row row0 + r of the operand (base + j *
// ld, or base + rows[j] * ld when gathered), columns col0 + c. Rows >= rows_left or columns >= cols_left are
// zero-filled.
template <int R, int C, int THREADS>
__device__ __forceinline__ void load_tile(bf16* s, const bf16* base, std::int64_t ld, const int* rows,
                                          int row0, int col0, int rows_left, int cols_left) {
  constexpr int chunks_per_row = C / 8;
  constexpr int total = R * chunks_per_row;
  static_assert(total % THREADS == 0, "tile chunks must divide evenly among threads");
#pragma unroll
  for (int i = 0; i < total / THREADS; ++i) {
    int idx = static_cast<int>(threadIdx.x) + i * THREADS;
    int r = idx / chunks_per_row;
    int c = (idx % chunks_per_row) * 8;
    bool ok = r < rows_left && c < cols_left;
    const bf16* src = base;
    if (ok) {
      std::int64_t j = rows != nullptr ? rows[row0 + r] : row0 + r;
      src = base + j * ld + col0 + c;
    }
    cp_async16(s + r * (C + PAD) + c, src, ok);
  }
}

// Shared-memory tile shapes: a K-major operand is [rows][BK], an MN-major one is [BK][rows].
template <int ROWS, bool KMAJOR>
struct TileShape {
  static constexpr int r = KMAJOR ? ROWS : BK;
  static constexpr int c = KMAJOR ? BK : ROWS;
  static constexpr int elems = r * (c + PAD);
};

template <int BM, int BN, int WARPS_M, int WARPS_N, int STAGES, bool A_KMAJOR, bool B_KMAJOR>
struct Config {
  static constexpr int threads = WARPS_M * WARPS_N * 32;
  static constexpr int wm = BM / WARPS_M, wn = BN / WARPS_N;  // warp tile
  static constexpr int mi = wm / 16, nj = wn / 8;
  using ATile = TileShape<BM, A_KMAJOR>;
  using BTile = TileShape<BN, B_KMAJOR>;
  static constexpr int stage_elems = ATile::elems + BTile::elems;
  static constexpr int smem_bytes = STAGES * stage_elems * 2;
  static_assert(wm % 16 == 0 && wn % 16 == 0, "warp tile must be a multiple of 16 x 16");
};

// The main loop: acc += A_tile(m0.., k) * B_tile(k, n0..) over k in [0, K).
// A: pointer to element (row m0, k 0) in K-major form or (k 0, col m0) in MN-major form; same for B with n0.
// rows_a / rows_b: valid extent along M / N from the tile origin; K: valid extent along k.
template <class Cfg, int BM, int BN, int STAGES, bool A_KMAJOR, bool B_KMAJOR>
__device__ __forceinline__ void mainloop(float (&acc)[Cfg::mi][Cfg::nj][4], bf16* smem, const bf16* A,
                                         std::int64_t lda, const int* a_rows, int rows_a, const bf16* B,
                                         std::int64_t ldb, const int* b_rows, int rows_b, int K) {
  constexpr int T = Cfg::threads;
  using AT = typename Cfg::ATile;
  using BT = typename Cfg::BTile;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int warp_n = warp % (BN / Cfg::wn);
  const int wm0 = (warp / (BN / Cfg::wn)) * Cfg::wm, wn0 = warp_n * Cfg::wn;
  const int ktiles = (K + BK - 1) / BK;

  auto load_stage = [&](int stage, int kt) {
    bf16* sa = smem + stage * Cfg::stage_elems;
    bf16* sb = sa + AT::elems;
    int k0 = kt * BK;
    if constexpr (A_KMAJOR)
      load_tile<AT::r, AT::c, T>(sa, A, lda, a_rows, 0, k0, rows_a, K - k0);
    else
      load_tile<AT::r, AT::c, T>(sa, A, lda, a_rows, k0, 0, K - k0, rows_a);
    if constexpr (B_KMAJOR)
      load_tile<BT::r, BT::c, T>(sb, B, ldb, b_rows, 0, k0, rows_b, K - k0);
    else
      load_tile<BT::r, BT::c, T>(sb, B, ldb, b_rows, k0, 0, K - k0, rows_b);
  };

#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < ktiles) load_stage(s, s);
    cp_async_commit();
  }

  const int q = lane / 8, r8 = lane % 8;
  for (int kt = 0; kt < ktiles; ++kt) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();
    int next = kt + STAGES - 1;
    if (next < ktiles) load_stage(next % STAGES, next);
    cp_async_commit();

    const bf16* sa = smem + (kt % STAGES) * Cfg::stage_elems;
    const bf16* sb = sa + AT::elems;
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      unsigned af[Cfg::mi][4];
      unsigned bfr[Cfg::nj][2];
#pragma unroll
      for (int i = 0; i < Cfg::mi; ++i) {
        int m = wm0 + i * 16;
        if constexpr (A_KMAJOR) {
          ldmatrix_x4(af[i], sa + (m + r8 + (q % 2) * 8) * (AT::c + PAD) + kk + (q / 2) * 8);
        } else {
          ldmatrix_x4_trans(af[i], sa + (kk + r8 + (q / 2) * 8) * (AT::c + PAD) + m + (q % 2) * 8);
        }
      }
#pragma unroll
      for (int j = 0; j < Cfg::nj; j += 2) {
        int n = wn0 + j * 8;
        unsigned t[4];
        if constexpr (B_KMAJOR) {
          ldmatrix_x4(t, sb + (n + r8 + (q / 2) * 8) * (BT::c + PAD) + kk + (q % 2) * 8);
        } else {
          ldmatrix_x4_trans(t, sb + (kk + r8 + (q % 2) * 8) * (BT::c + PAD) + n + (q / 2) * 8);
        }
        bfr[j][0] = t[0];
        bfr[j][1] = t[1];
        bfr[j + 1][0] = t[2];
        bfr[j + 1][1] = t[3];
      }
#pragma unroll
      for (int i = 0; i < Cfg::mi; ++i)
#pragma unroll
        for (int j = 0; j < Cfg::nj; ++j) mma_bf16(acc[i][j], af[i], bfr[j][0], bfr[j][1]);
    }
  }
  cp_async_wait<0>();
}

template <int BM, int BN, int WARPS_M, int WARPS_N, int STAGES, bool B_KMAJOR>
__global__ void __launch_bounds__(WARPS_M* WARPS_N * 32) grouped_gemm_rows_kernel(GroupedGemmRows p) {
  using Cfg = Config<BM, BN, WARPS_M, WARPS_N, STAGES, true, B_KMAJOR>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* smem = reinterpret_cast<bf16*>(smem_raw);

  const int ntiles_n = (p.n + BN - 1) / BN;
  const int tile = static_cast<int>(blockIdx.x) / ntiles_n;  // n-tile fastest: neighbours share the A rows
  const int tn = static_cast<int>(blockIdx.x) % ntiles_n;
  if (tile >= p.tile_offsets[p.groups]) return;
  const int g = group_of_tile(p.tile_offsets, p.groups, tile);
  const int row0 = p.offsets[g] + (tile - p.tile_offsets[g]) * BM;
  const int rows = p.offsets[g + 1] - row0;  // valid rows from row0 (may exceed BM)
  const int n0 = tn * BN;

  float acc[Cfg::mi][Cfg::nj][4] = {};
  const bf16* A = p.a_rows != nullptr ? p.a : p.a + row0 * p.lda;
  const int* a_rows = p.a_rows != nullptr ? p.a_rows + row0 : nullptr;
  const bf16* Bg = p.b + g * p.b_group_stride;
  const bf16* B = B_KMAJOR ? Bg + static_cast<std::int64_t>(n0) * p.k : Bg + n0;
  std::int64_t ldb = B_KMAJOR ? p.k : p.n;
  mainloop<Cfg, BM, BN, STAGES, true, B_KMAJOR>(acc, smem, A, p.lda, a_rows, rows, B, ldb, nullptr, p.n - n0,
                                                p.k);

  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int wm0 = (warp / (BN / Cfg::wn)) * Cfg::wm, wn0 = (warp % (BN / Cfg::wn)) * Cfg::wn;
#pragma unroll
  for (int i = 0; i < Cfg::mi; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      int r = wm0 + i * 16 + lane / 4 + h * 8;
      if (r >= rows || r >= BM) continue;
      bf16* crow = p.c + (row0 + r) * p.ldc;
#pragma unroll
      for (int j = 0; j < Cfg::nj; ++j) {
        int n = n0 + wn0 + j * 8 + (lane % 4) * 2;
        if (n < p.n)
          *reinterpret_cast<__nv_bfloat162*>(crow + n) =
              __floats2bfloat162_rn(acc[i][j][2 * h], acc[i][j][2 * h + 1]);
      }
    }
}

template <int BM, int BN, int WARPS_M, int WARPS_N, int STAGES, bool FP32_OUT, bool ACCUMULATE>
__global__ void __launch_bounds__(WARPS_M* WARPS_N * 32)
    grouped_gemm_weight_grad_kernel(GroupedGemmWeightGrad p) {
  using Cfg = Config<BM, BN, WARPS_M, WARPS_N, STAGES, false, false>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* smem = reinterpret_cast<bf16*>(smem_raw);

  const int ntiles_n = (p.nw + BN - 1) / BN, ntiles_m = (p.mw + BM - 1) / BM;
  const int per_group = ntiles_n * ntiles_m;
  const int g = static_cast<int>(blockIdx.x) / per_group;
  const int t = static_cast<int>(blockIdx.x) % per_group;
  const int m0 = (t / ntiles_n) * BM, n0 = (t % ntiles_n) * BN;
  const int r0 = p.offsets[g], kcount = p.offsets[g + 1] - r0;

  float acc[Cfg::mi][Cfg::nj][4] = {};
  if (kcount > 0) {
    const bf16* A = p.a_rows != nullptr ? p.a + m0 : p.a + r0 * p.lda + m0;
    const bf16* B = p.b_rows != nullptr ? p.b + n0 : p.b + r0 * p.ldb + n0;
    mainloop<Cfg, BM, BN, STAGES, false, false>(
        acc, smem, A, p.lda, p.a_rows != nullptr ? p.a_rows + r0 : nullptr, p.mw - m0, B, p.ldb,
        p.b_rows != nullptr ? p.b_rows + r0 : nullptr, p.nw - n0, kcount);
  }

  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int wm0 = (warp / (BN / Cfg::wn)) * Cfg::wm, wn0 = (warp % (BN / Cfg::wn)) * Cfg::wn;
  const std::int64_t base = static_cast<std::int64_t>(g) * p.mw * p.nw;
#pragma unroll
  for (int i = 0; i < Cfg::mi; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      int m = m0 + wm0 + i * 16 + lane / 4 + h * 8;
      if (m >= p.mw) continue;
#pragma unroll
      for (int j = 0; j < Cfg::nj; ++j) {
        int n = n0 + wn0 + j * 8 + (lane % 4) * 2;
        if (n >= p.nw) continue;
        std::int64_t at = base + static_cast<std::int64_t>(m) * p.nw + n;
        float v0 = acc[i][j][2 * h], v1 = acc[i][j][2 * h + 1];
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
}

template <class Kernel>
void set_smem(Kernel kernel, int bytes) {
  G4_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

// The policy in force: G4_GROUPED_GEMM_POLICY (an integer, read once at start-up) when set, else the default.
int initial_tile_policy() {
  const char* env = std::getenv("G4_GROUPED_GEMM_POLICY");
  return env != nullptr && *env != '\0' ? std::atoi(env) : grouped_gemm_default_tile_policy;
}
int g_tile_policy = initial_tile_policy();

WgmmaSchedule wgmma_schedule(bool wide_ok) {
  if (g_tile_policy == 3 && wide_ok) return WgmmaSchedule::wide;
  if (g_tile_policy == 4) return WgmmaSchedule::in_flight;
  return WgmmaSchedule::standard;
}

template <int BN, int WARPS_N, int STAGES, bool B_KMAJOR>
void launch_rows(const GroupedGemmRows& a, cudaStream_t stream) {
  constexpr int BM = grouped_gemm_block_m;
  using Cfg = Config<BM, BN, 2, WARPS_N, STAGES, true, B_KMAJOR>;
  auto kernel = grouped_gemm_rows_kernel<BM, BN, 2, WARPS_N, STAGES, B_KMAJOR>;
  set_smem(kernel, Cfg::smem_bytes);
  std::int64_t max_tiles = (a.max_rows + BM - 1) / BM + a.groups;
  std::int64_t blocks = max_tiles * ((a.n + BN - 1) / BN);
  check(blocks < (1ll << 31), "grouped GEMM too large: ", blocks, " blocks (ops/cuda/grouped_gemm.cu)");
  kernel<<<static_cast<unsigned>(blocks), Cfg::threads, Cfg::smem_bytes, stream>>>(a);
  G4_CUDA_CHECK_LAUNCH();
}

}  // namespace

void grouped_gemm_set_tile_policy(int policy) {
  g_tile_policy = policy;
}
int grouped_gemm_tile_policy() {
  return g_tile_policy;
}

void grouped_gemm_rows(const GroupedGemmRows& a, cudaStream_t stream) {
  check(a.k % 8 == 0 && a.n % 8 == 0 && a.lda % 8 == 0 && a.ldc % 8 == 0 && a.b_group_stride % 8 == 0,
        "grouped GEMM: K, N and leading dimensions must be multiples of 8 (ops/cuda/grouped_gemm.cu)");
  if (a.max_rows == 0 || a.groups == 0) return;
  if (g_tile_policy >= 5 && g_tile_policy <= 10) {
    RowsWsOptions options;
    options.epilogue = g_tile_policy >= 9   ? WsEpilogue::staged
                       : g_tile_policy >= 7 ? WsEpilogue::store16
                                            : WsEpilogue::store4;
    options.a_by_tma = g_tile_policy >= 8;
    options.pair = g_tile_policy == 10;
    grouped_gemm_rows_ws(a, options, stream);
    return;
  }
  if (g_tile_policy != 1 && g_tile_policy != 2) {
    grouped_gemm_rows_wgmma(a, wgmma_schedule(a.n % 256 == 0), stream);
    return;
  }
  bool wide = a.n % 256 == 0 && g_tile_policy != 1;
  if (a.b_transposed) {
    if (wide)
      launch_rows<256, 4, 3, true>(a, stream);
    else
      launch_rows<128, 2, 4, true>(a, stream);
  } else {
    if (wide)
      launch_rows<256, 4, 3, false>(a, stream);
    else
      launch_rows<128, 2, 4, false>(a, stream);
  }
}

void grouped_gemm_weight_grad(const GroupedGemmWeightGrad& a, cudaStream_t stream) {
  check(a.mw % 8 == 0 && a.nw % 8 == 0 && a.lda % 8 == 0 && a.ldb % 8 == 0,
        "grouped GEMM: Mw, Nw and leading dimensions must be multiples of 8 (ops/cuda/grouped_gemm.cu)");
  check(!a.accumulate || a.c_is_fp32,
        "grouped GEMM: accumulation needs an fp32 output (ops/cuda/grouped_gemm.cu)");
  if (a.groups == 0) return;
  // Policy 6: the warp-specialised kernel where its larger operand (B, 256 columns a tile) comes by TMA.
  if (g_tile_policy == 5 || (g_tile_policy >= 7 && g_tile_policy <= 10) ||
      (g_tile_policy == 6 && a.b_rows == nullptr)) {
    grouped_gemm_weight_grad_ws(a, g_tile_policy >= 9, stream);
    return;
  }
  if (g_tile_policy != 1 && g_tile_policy != 2) {
    grouped_gemm_weight_grad_wgmma(a, wgmma_schedule(true), stream);
    return;
  }
  constexpr int BM = 128, BN = 128, STAGES = 4;
  using Cfg = Config<BM, BN, 2, 2, STAGES, false, false>;
  std::int64_t blocks = static_cast<std::int64_t>(a.groups) * ((a.mw + BM - 1) / BM) * ((a.nw + BN - 1) / BN);
  check(blocks < (1ll << 31), "grouped GEMM too large (ops/cuda/grouped_gemm.cu)");
  auto go = [&](auto kernel) {
    set_smem(kernel, Cfg::smem_bytes);
    kernel<<<static_cast<unsigned>(blocks), Cfg::threads, Cfg::smem_bytes, stream>>>(a);
    G4_CUDA_CHECK_LAUNCH();
  };
  if (!a.c_is_fp32)
    go(grouped_gemm_weight_grad_kernel<BM, BN, 2, 2, STAGES, false, false>);
  else if (a.accumulate)
    go(grouped_gemm_weight_grad_kernel<BM, BN, 2, 2, STAGES, true, true>);
  else
    go(grouped_gemm_weight_grad_kernel<BM, BN, 2, 2, STAGES, true, false>);
}

}  // namespace g4::cuda
