// grouped_gemm_ws.cu: warp-specialised, persistent grouped GEMMs on wgmma, the kernels behind grouped_gemm.h
// (version 7 in docs/perf-notes.md, the fastest measured; the versions it beat are recorded there and removed
// from the code); same arguments and contract as grouped_gemm.h.
//
// CTA: 384 threads, one per SM, looping over output tiles b, b + grid, ... (n-tiles innermost,
// so the CTAs in flight share A rows and one expert's weights in L2). Tile 128 x 256
// x 64 (BM x BN x BK), STAGES = 4 shared stages of 48 KiB in a ring (3 with the staged epilogue).
//  - Warpgroup 0, the producer: for each k-tile it waits for a free stage ("empty" mbarrier; the source rows
//    of gathered operands are fetched before that wait), then fills it: operands read in place come by bulk
//    tensor copy (TMA) issued by thread 0, which arrives with expect_tx (the rows GEMMs' weights through a
//    3-D map [group][k][n] so that tails are zeros; in the weight gradients, in-place operands in the k-tiles
//    that lie wholly inside the group's rows); gathered rows and the groups' partial k-tiles come by cp.async
//    from all 128 threads (out-of-range rows and columns zero-filled), each of which then arrives with
//    cp.async.mbarrier.arrive.noinc. "full" counts 129 arrivals plus the TMA bytes: the phase completes once
//    every copy of the stage has landed.
//  - Warpgroups 1 and 2, the consumers: each owns 64 rows of the tile; per k-tile it
//    waits on "full", fences the async proxy, issues 4 wgmma k16 and keeps one batch in flight (wait_group
//    1); the stage the previous batch read is then released through its "empty" mbarrier (count 8: lane 0
//    of each consumer warp). After a tile, the epilogue stores from registers while the producer is already
//    filling the ring with the next tile's k-tiles.
// Epilogues: bf16 outputs (rows GEMMs, bf16 weight gradients) are staged: the tile goes through stmatrix into
// a padded shared staging buffer and each valid row to the bulk copy engine (cp.async.bulk, one 512-byte copy
// a row), so the consumers return to the MMA of their next tile while the stores drain. An output base that
// is not 16-byte aligned (bulk copies need it) takes the store16 epilogue instead: a lane quad's pairs are
// transposed so that each lane stores 16 bytes. fp32 weight gradients are stored from registers. The staging
// buffer (66 KiB) leaves room for only 3 ring stages. ptxas reports spills in the staged weight-gradient
// kernel only (a few dozen bytes of stores, figures in docs/perf-notes.md; cause not found: not the ring
// depth, not the stmatrix staging). A operands read in place: in the tiles that lie wholly inside their
// group's rows, A comes by TMA like B (a 2-D map [rows][K]), so that the producer issues two bulk tensor
// copies a k-tile and no cp.async; the group's partial last tile still comes by cp.async, so no row outside
// the segments is read. Registers: 384 threads at one CTA per SM cap every thread at 168, which holds a
// consumer's 128 fp32 accumulators without spills (ptxas -v), so there is no setmaxnreg: lowering the
// producer to 56 registers made it spill its addresses, and the consumers need no more. Ring invariant: the
// i-th k-tile of the CTA's whole tile sequence lives in stage i % STAGES with phase parity (i / STAGES) & 1;
// producer and consumers walk the same sequence (both derive it from the same arguments). Shared layouts,
// swizzle and descriptors follow wgmma's 128-byte swizzle (wgmma_instructions.h).
#include <cstdint>
#include <type_traits>

#include "core/cuda/cuda_check.h"
#include "ops/cuda/bulk_store.h"
#include "ops/cuda/grouped_gemm_ws.h"
#include "ops/cuda/grouped_tiles.h"
#include "ops/cuda/mbarrier.h"
#include "ops/cuda/tensor_map.h"
#include "ops/cuda/tma_copy.h"
#include "ops/cuda/wgmma_instructions.h"

namespace g4::cuda {
namespace {

using bf16 = __nv_bfloat16;
constexpr int BM = 128, BN = 256, BK = 64;
constexpr int PRODUCER_THREADS = 128, THREADS = 384;
constexpr int BLOCK64 = 64 * 128;  // one 64 x 64 bf16 swizzled block: 8 KiB
constexpr int A_BYTES = BM * BK * 2, B_BYTES = BN * BK * 2, STAGE_BYTES = A_BYTES + B_BYTES;
// Staged epilogue: BM rows of BN bf16 at a stride of 528 bytes, so that the 8 rows of an stmatrix block start
// 16 bytes apart modulo 128 and fall in distinct banks.
constexpr int STAGING_LD = BN * 2 + 16;
constexpr int STAGING_BYTES = BM * STAGING_LD;

// Dynamic shared memory: the ring's stages (1024-byte aligned, as 128-byte swizzling needs), then the staging
// buffer when the epilogue is staged, then the ring's barriers; plus slack for aligning the base.
template <int STAGES, bool STAGED>
struct SmemLayout {
  static constexpr int staging = STAGES * STAGE_BYTES;
  static constexpr int barriers = staging + (STAGED ? STAGING_BYTES : 0);
  static constexpr int bytes = barriers + 2 * STAGES * 8 + 1024;
  static_assert(bytes <= 227 * 1024, "shared memory per CTA on sm_90");
};
static_assert(BM == grouped_gemm_block_m, "tile_offsets count tiles of grouped_gemm_block_m rows");

__device__ __forceinline__ void cp_async16(std::uint32_t smem, const void* gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem), "l"(gmem), "r"(valid ? 16 : 0));
}

// The memory rows a producer thread copies from in one k-tile: N row numbers, already mapped through the row
// map of a gathered operand. Fetched before the producer waits for a free stage (they do not depend on it),
// so that the index loads' latency hides behind the wait instead of delaying the copies.
template <int N>
struct RowIdx {
  int v[N];
};

// K-major tile of ROWS memory rows: thread tid copies chunks tid + i * 128, i.e. rows tid / 8 + 16 i.
template <int ROWS>
__device__ __forceinline__ RowIdx<ROWS / 16> kmajor_rows(int tid, const int* rows, int rows_left) {
  RowIdx<ROWS / 16> out;
#pragma unroll
  for (int i = 0; i < ROWS / 16; ++i) {
    int r = tid / 8 + 16 * i;
    out.v[i] = rows != nullptr && r < rows_left ? rows[r] : r;
  }
  return out;
}

// MN-major tile of 64 k-rows x MN columns: thread tid copies chunks tid + i * 128, i.e. k-rows
// (tid + 128 i) / (MN / 8), memory rows k0 + k.
template <int MN>
__device__ __forceinline__ RowIdx<MN / 16> mnmajor_rows(int tid, const int* rows, int k0, int k_end) {
  constexpr int cpr = MN / 8;
  RowIdx<MN / 16> out;
#pragma unroll
  for (int i = 0; i < 64 * cpr / PRODUCER_THREADS; ++i) {
    int k = k0 + (tid + i * PRODUCER_THREADS) / cpr;
    out.v[i] = rows != nullptr && k < k_end ? rows[k] : k;
  }
  return out;
}

// K-major tile, ROWS memory rows x 64 k from column k0, copied by producer thread tid from the rows in `at`
// (kmajor_rows); rows >= rows_left or k >= k_end are zeros. Layout: row * 128 + ((c ^ row % 8) * 16).
template <int ROWS>
__device__ __forceinline__ void load_kmajor(std::uint32_t s, int tid, const bf16* base, std::int64_t ld,
                                            const RowIdx<ROWS / 16>& at, int rows_left, int k0, int k_end) {
#pragma unroll
  for (int i = 0; i < ROWS * 8 / PRODUCER_THREADS; ++i) {
    int idx = tid + i * PRODUCER_THREADS;
    int r = idx >> 3, c = idx & 7;
    bool ok = r < rows_left && k0 + c * 8 < k_end;
    cp_async16(s + r * 128 + ((c ^ (r & 7)) << 4), ok ? base + at.v[i] * ld + k0 + c * 8 : base, ok);
  }
}

// MN-major tile, 64 k-rows (memory rows from `at`, mnmajor_rows) x MN columns; k-rows >= k_end or columns >=
// mn_left are zeros. Layout: blk * 8192 + k * 128 + ((c ^ k % 8) * 16), blk = the 64-wide column block.
template <int MN>
__device__ __forceinline__ void load_mnmajor(std::uint32_t s, int tid, const bf16* base, std::int64_t ld,
                                             const RowIdx<MN / 16>& at, int k0, int k_end, int mn_left) {
  constexpr int cpr = MN / 8;  // 16-byte chunks per k-row
#pragma unroll
  for (int i = 0; i < 64 * cpr / PRODUCER_THREADS; ++i) {
    int idx = tid + i * PRODUCER_THREADS;
    int k = idx / cpr, c = idx % cpr;
    bool ok = k0 + k < k_end && c * 8 < mn_left;
    cp_async16(s + (c >> 3) * BLOCK64 + k * 128 + (((c & 7) ^ (k & 7)) << 4),
               ok ? base + at.v[i] * ld + c * 8 : base, ok);
  }
}

__device__ __forceinline__ std::uint64_t smem_desc(std::uint32_t addr) {
  return ((addr & 0x3FFFFu) >> 4) | (static_cast<std::uint64_t>(BLOCK64 >> 4) << 16) |
         (static_cast<std::uint64_t>(1024 >> 4) << 32) | (1ull << 62);
}

__device__ __forceinline__ int acc_row(int i) {
  int warp = (static_cast<int>(threadIdx.x) % 128) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  return warp * 16 + lane / 4 + ((i >> 1) & 1) * 8;
}
__device__ __forceinline__ int acc_col(int i) {
  return (i >> 2) * 8 + (static_cast<int>(threadIdx.x) % 4) * 2;
}

// One output tile's operands (base pointers already at the tile's
// first row/column; K-major operands have M (N) as memory rows, MN-major ones k) and its place in C.
struct Tile {
  const bf16* a;
  std::int64_t lda;
  const int* a_rows;
  int a_left;  // valid M rows (K-major) or columns (MN-major) of A from the tile's start
  const bf16* b;
  std::int64_t ldb;
  const int* b_rows;
  int b_left;
  int k;          // reduction length; 0: the tile is all zeros
  int g, m0, n0;  // group, first output row (rows GEMM: permuted row) and column
  int r0;         // weight gradients: the group's first row (the k origin of both operands)
};

struct Acc {
  float d[BN / 2];
};

__device__ __forceinline__ void store2(bf16* at, float v0, float v1) {
  *reinterpret_cast<__nv_bfloat162*>(at) = __floats2bfloat162_rn(v0, v1);
}
template <bool ACCUMULATE>
__device__ __forceinline__ void store2(float* at, float v0, float v1) {
  if constexpr (ACCUMULATE) {
    float2 old = *reinterpret_cast<float2*>(at);
    v0 += old.x;
    v1 += old.y;
  }
  *reinterpret_cast<float2*>(at) = make_float2(v0, v1);
}

// Stores a consumer thread's accumulators: element pair 4j (+1) goes to lo[8j], pair 4j + 2 (+3) to hi[8j]
// (lo: its first row and column, hi: 8 rows below; acc_row / acc_col), skipping rows not ok and columns
// >= cols_left. Written with two base pointers and immediate offsets so that the compiler keeps no
// per-element addresses alive next to the accumulators.
template <bool ACCUMULATE = false, class T>
__device__ __forceinline__ void store_rows(const Acc& acc, T* lo, T* hi, bool lo_ok, bool hi_ok,
                                           int cols_left) {
#pragma unroll
  for (int j = 0; j < BN / 8; ++j) {
    if (j * 8 >= cols_left) break;
    if constexpr (std::is_same_v<T, float>) {
      if (lo_ok) store2<ACCUMULATE>(lo + 8 * j, acc.d[4 * j], acc.d[4 * j + 1]);
      if (hi_ok) store2<ACCUMULATE>(hi + 8 * j, acc.d[4 * j + 2], acc.d[4 * j + 3]);
    } else {
      if (lo_ok) store2(lo + 8 * j, acc.d[4 * j], acc.d[4 * j + 1]);
      if (hi_ok) store2(hi + 8 * j, acc.d[4 * j + 2], acc.d[4 * j + 3]);
    }
  }
}

__device__ __forceinline__ std::uint32_t pack_bf16x2(float a, float b) {
  __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
  return *reinterpret_cast<std::uint32_t*>(&v);
}
__device__ __forceinline__ std::uint32_t pick(const std::uint32_t (&v)[4], int i) {
  return i == 0 ? v[0] : i == 1 ? v[1] : i == 2 ? v[2] : v[3];
}

// bf16 stores of 16 bytes (the store16 epilogue): the 4 lanes of a quad hold columns 8j + 2q, 8j + 2q + 1 of
// the same two rows (q = lane % 4); for each group of 4 column blocks j0 .. j0 + 3 the quad transposes its 4
// x 4 packed pairs with 3 shuffles, so that lane q holds the 8 columns of block j0 + q and stores them at
// once (a quad then writes 64 contiguous bytes a row instead of four 16-byte pieces). lo / hi: the thread's
// two rows at the tile's first column; cols_left: columns from there (a multiple of 8). Every lane must call
// this.
__device__ __forceinline__ void store_rows_bf16x8(const Acc& acc, bf16* lo, bf16* hi, bool lo_ok, bool hi_ok,
                                                  int cols_left) {
  const int lane = static_cast<int>(threadIdx.x) % 32, q = lane % 4;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    bf16* row = h == 0 ? lo : hi;
    const bool ok = h == 0 ? lo_ok : hi_ok;
#pragma unroll
    for (int g = 0; g < BN / 32; ++g) {
      std::uint32_t v[4], w[4], out[4];
#pragma unroll
      for (int r = 0; r < 4; ++r)
        v[r] = pack_bf16x2(acc.d[4 * (4 * g + r) + 2 * h], acc.d[4 * (4 * g + r) + 2 * h + 1]);
      // w[r]: lane (q + r) % 4's pair for block j0 + q, i.e. columns 2 ((q + r) % 4) of that block.
      w[0] = pick(v, q);
#pragma unroll
      for (int r = 1; r < 4; ++r)
        w[r] = __shfl_sync(0xffffffffu, pick(v, (q - r) & 3), (lane & ~3) | ((q + r) & 3));
#pragma unroll
      for (int c = 0; c < 4; ++c) out[c] = pick(w, (c - q) & 3);
      const int col = (4 * g + q) * 8;
      if (ok && col < cols_left)
        *reinterpret_cast<uint4*>(row + col) = make_uint4(out[0], out[1], out[2], out[3]);
    }
  }
}

// Staged bf16 epilogue of one consumer warpgroup, in two steps. stage_rows: its 64 rows go through
// stmatrix into `stage` (64 rows of STAGING_LD bytes, the warpgroup's half of the staging buffer); before
// overwriting the buffer, the threads that issued the previous tile's copies wait until those have read it.
// barrier: the warpgroup's named barrier. Every thread of the warpgroup must call it. copy_staged_rows, after
// it: thread t < rows_valid of the first 64 copies row t, `bytes` long, to row0 + t * ldc by the bulk copy
// engine. (Two steps so that the callers compute the destination once the accumulators are dead.)
__device__ __forceinline__ void stage_rows(const Acc& acc, std::uint32_t stage, int barrier) {
  const int t = static_cast<int>(threadIdx.x) % 128, warp = t / 32, lane = t % 32;
  if (t < 64) bulk::wait_all_read();
  bulk::named_barrier(barrier, 128);
  // Lane L addresses row L % 8 of block L / 8: blocks 0 / 1 are the warp's rows 0-7 / 8-15 at column block j,
  // blocks 2 / 3 the same rows at column block j + 1 (16 bytes on).
  const std::uint32_t at =
      stage + (warp * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * STAGING_LD + (lane >> 4) * 16;
#pragma unroll
  for (int j = 0; j < BN / 8; j += 2)
    bulk::stmatrix_x4(at + j * 16, pack_bf16x2(acc.d[4 * j], acc.d[4 * j + 1]),
                      pack_bf16x2(acc.d[4 * j + 2], acc.d[4 * j + 3]),
                      pack_bf16x2(acc.d[4 * j + 4], acc.d[4 * j + 5]),
                      pack_bf16x2(acc.d[4 * j + 6], acc.d[4 * j + 7]));
  wgmma::fence_proxy_async();  // the stmatrix writes (generic proxy) before the bulk copies' reads (async
                               // proxy)
  bulk::named_barrier(barrier, 128);
}
__device__ __forceinline__ void copy_staged_rows(std::uint32_t stage, bf16* row0, std::int64_t ldc,
                                                 int rows_valid, std::uint32_t bytes) {
  const int t = static_cast<int>(threadIdx.x) % 128;
  if (t < 64 && t < rows_valid) {
    bulk::store(row0 + t * ldc, stage + t * STAGING_LD, bytes);
    bulk::commit();
  }
}

// acc (+)= this warpgroup's 64 rows of the stage's A times its B (first: overwrite).
template <bool A_KMAJOR, bool B_KMAJOR>
__device__ __forceinline__ void mma_stage(Acc& acc, std::uint32_t sa, int wg, bool first) {
  const std::uint32_t sb = sa + A_BYTES, a_base = sa + wg * BLOCK64;
  wgmma::fence();
#pragma unroll
  for (int kk = 0; kk < BK / 16; ++kk) {
    std::uint32_t a_addr = a_base + (A_KMAJOR ? kk * 32 : kk * 16 * 128);
    std::uint32_t b_addr = sb + (B_KMAJOR ? kk * 32 : kk * 16 * 128);
    wgmma::wgmma_m64n256k16<A_KMAJOR ? 0 : 1, B_KMAJOR ? 0 : 1>(acc.d, smem_desc(a_addr), smem_desc(b_addr),
                                                                !first || kk > 0);
  }
  wgmma::commit();
}

template <int STAGES>
struct Ring {
  int stage = 0;
  std::uint32_t phase = 0;
  __device__ __forceinline__ void advance() {
    if (++stage == STAGES) {
      stage = 0;
      phase ^= 1;
    }
  }
};

// The persistent producer/consumer loop over tiles [0, total): tile_of(t) gives tile t's operands;
// load(tile, kt, stage, full, tid) is run by every producer thread for k-tile kt: it issues the stage's
// copies (cp.async, or TMA by thread 0 counted through arrive_expect_tx), and thread 0 makes exactly one
// arrival on `full` besides (expect_tx or plain); every producer thread then arrives through its cp.async
// (count 129 in all). epilogue(tile, acc, wg, staging) stores consumer warpgroup wg's 64 rows (staging: the
// shared address of the staging buffer, when STAGED); a consumer thread's bulk stores have all completed
// before it exits.
template <bool A_KMAJOR, bool B_KMAJOR, int STAGES, bool STAGED, class TileOf, class Prepare, class Load,
          class Epilogue>
__device__ __forceinline__ void persistent_gemm(int total, const TileOf& tile_of, const Prepare& prepare,
                                                const Load& load, const Epilogue& epilogue) {
  using Layout = SmemLayout<STAGES, STAGED>;
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const std::uint32_t smem =
      (static_cast<std::uint32_t>(__cvta_generic_to_shared(smem_raw)) + 1023u) & ~1023u;
  const std::uint32_t full0 = smem + Layout::barriers, empty0 = full0 + STAGES * 8;
  const int first = static_cast<int>(blockIdx.x), stride = static_cast<int>(gridDim.x);
  if (threadIdx.x == 0) {
    for (int s = 0; s < STAGES; ++s) {
      mbar::init(full0 + 8 * s, PRODUCER_THREADS + 1);
      mbar::init(empty0 + 8 * s, 8);  // lane 0 of each of the 8 consumer warps
    }
  }
  __syncthreads();
  Ring<STAGES> ring;
  if (threadIdx.x < PRODUCER_THREADS) {
    const int tid = static_cast<int>(threadIdx.x);
    for (int t = first; t < total; t += stride) {
      const Tile tile = tile_of(t);
      const int ktiles = (tile.k + BK - 1) / BK;
      for (int kt = 0; kt < ktiles; ++kt) {
        const std::uint32_t sa = smem + ring.stage * STAGE_BYTES, full = full0 + 8 * ring.stage;
        const auto rows = prepare(tile, kt, tid);
        mbar::wait(empty0 + 8 * ring.stage, ring.phase ^ 1);
        load(tile, kt, sa, full, tid, rows);
        mbar::arrive_on_cp_async(full);
        ring.advance();
      }
    }
    // Drain: once every stage has been released, every copy has landed and every arrival been made.
    for (int s = 0; s < STAGES; ++s) {
      mbar::wait(empty0 + 8 * ring.stage, ring.phase ^ 1);
      ring.advance();
    }
  } else {
    const int wg = static_cast<int>(threadIdx.x) / 128 - 1;
    const bool leader = threadIdx.x % 32 == 0;
    auto release = [&](int stage) {
      if (leader) mbar::arrive(empty0 + 8 * stage);
    };
    for (int t = first; t < total; t += stride) {
      const Tile tile = tile_of(t);
      const int ktiles = (tile.k + BK - 1) / BK;
      // Zeroed per tile (the first wgmma overwrites it anyway): without this the compiler sees the previous
      // tile's accumulators flow into the "+f" operands of the next tile's first wgmma, keeps them alive
      // through the epilogue and tile lookup, and spills.
      Acc acc;
#pragma unroll
      for (int i = 0; i < BN / 2; ++i) acc.d[i] = 0.0f;
      if (ktiles > 0) {
        int prev = -1;
#pragma unroll 1
        for (int kt = 0; kt < ktiles; ++kt) {
          mbar::wait(full0 + 8 * ring.stage, ring.phase);
          wgmma::fence_proxy_async();  // cp.async wrote the stage (generic proxy); wgmma reads it (async
                                       // proxy)
          mma_stage<A_KMAJOR, B_KMAJOR>(acc, smem + ring.stage * STAGE_BYTES, wg, kt == 0);
          wgmma::wait<1>();  // the previous batch is done: its stage may be refilled
          if (prev >= 0) release(prev);
          prev = ring.stage;
          ring.advance();
        }
        wgmma::wait<0>();
        release(prev);
      }
      epilogue(tile, acc, wg, smem + Layout::staging);
    }
    if constexpr (STAGED) bulk::wait_all();
  }
}

// Rows GEMM (forward and input gradients): tile t = (m-tile, n-tile), m-tiles mapped to groups through
// tile_offsets. A_TMA: A is read in place (no a_rows) and a_map maps it. STAGED: the staged epilogue (else
// store16, for an output base that is not 16-byte aligned).
template <bool B_KMAJOR, bool STAGED, bool A_TMA>
__global__ void __launch_bounds__(THREADS, 1)
    rows_ws_kernel(GroupedGemmRows p, const __grid_constant__ CUtensorMap a_map,
                   const __grid_constant__ CUtensorMap b_map) {
  constexpr int STAGES = STAGED ? 3 : 4;
  const int ntiles_n = (p.n + BN - 1) / BN;
  const int total = p.tile_offsets[p.groups] * ntiles_n;
  auto tile_of = [&](int t) {
    const int unit = t / ntiles_n, tn = t % ntiles_n;
    const int g = group_of_tile(p.tile_offsets, p.groups, unit);
    const int mt = unit - p.tile_offsets[g];  // m-tile in group
    const int row0 = p.offsets[g] + mt * BM;
    const int n0 = tn * BN;
    const bf16* bg = p.b + g * p.b_group_stride;
    Tile tile;
    tile.a = p.a_rows != nullptr ? p.a : p.a + row0 * p.lda;
    tile.lda = p.lda;
    tile.a_rows = p.a_rows != nullptr ? p.a_rows + row0 : nullptr;
    tile.a_left = p.offsets[g + 1] - row0;
    tile.b = B_KMAJOR ? bg + static_cast<std::int64_t>(n0) * p.k : bg + n0;
    tile.ldb = B_KMAJOR ? p.k : p.n;
    tile.b_rows = nullptr;
    tile.b_left = p.n - n0;
    tile.k = p.k;
    tile.g = g;
    tile.m0 = row0;
    tile.n0 = n0;
    return tile;
  };
  auto epilogue = [&](const Tile& tile, const Acc& acc, int wg, std::uint32_t staging) {
    const int r = wg * 64 + acc_row(0);
    if constexpr (STAGED) {
      const int cols = p.n - tile.n0 < BN ? p.n - tile.n0 : BN;
      const std::uint32_t stage = staging + wg * 64 * STAGING_LD;
      stage_rows(acc, stage, 1 + wg);
      copy_staged_rows(stage, p.c + static_cast<std::int64_t>(tile.m0 + wg * 64) * p.ldc + tile.n0, p.ldc,
                       tile.a_left - wg * 64, static_cast<std::uint32_t>(cols) * 2);
    } else {
      bf16* lo = p.c + static_cast<std::int64_t>(tile.m0 + r) * p.ldc + tile.n0;
      store_rows_bf16x8(acc, lo, lo + 8 * p.ldc, r < tile.a_left, r + 8 < tile.a_left, p.n - tile.n0);
    }
  };
  // B (weights) by TMA: four 64 x 64 boxes at (column, k, group), or one 64 k x 256 row box at (k, row,
  // group); A (possibly gathered rows) by cp.async, or (A_TMA) by TMA, one 64 k x 128 row box at (k, row),
  // when the tile lies wholly inside its group.
  auto prepare = [&](const Tile& tile, int, int tid) {
    return kmajor_rows<BM>(tid, tile.a_rows, tile.a_left);
  };
  auto load = [&](const Tile& tile, int kt, std::uint32_t sa, std::uint32_t full, int tid,
                  const RowIdx<BM / 16>& rows) {
    const bool a_tma = A_TMA && tile.a_left >= BM;
    if (tid == 0) {
      tma::arrive_expect_tx(full, B_BYTES + (a_tma ? A_BYTES : 0));
      if (a_tma) tma::load_2d(sa, &a_map, kt * BK, tile.m0, full);
      if constexpr (B_KMAJOR) {
        tma::load_3d(sa + A_BYTES, &b_map, kt * BK, tile.n0, tile.g, full);
      } else {
#pragma unroll
        for (int j = 0; j < BN / 64; ++j)
          tma::load_3d(sa + A_BYTES + j * BLOCK64, &b_map, tile.n0 + 64 * j, kt * BK, tile.g, full);
      }
    }
    if (!a_tma && tile.a_left > 0)
      load_kmajor<BM>(sa, tid, tile.a, tile.lda, rows, tile.a_left, kt * BK, tile.k);
  };
  persistent_gemm<true, B_KMAJOR, STAGES, STAGED>(total, tile_of, prepare, load, epilogue);
}

// Weight-gradient GEMM: tile t = (group, m-tile, n-tile) with K = the group's rows; both operands MN-major.
// STAGED (bf16 output only): the staged epilogue, with 3 ring stages.
template <bool FP32_OUT, bool ACCUMULATE, bool STAGED>
__global__ void __launch_bounds__(THREADS, 1)
    weight_grad_ws_kernel(GroupedGemmWeightGrad p, const __grid_constant__ CUtensorMap a_map,
                          const __grid_constant__ CUtensorMap b_map) {
  static_assert(!(STAGED && FP32_OUT), "the staged epilogue stores bf16");
  constexpr int STAGES = STAGED ? 3 : 4;
  using OutT = std::conditional_t<FP32_OUT, float, bf16>;
  const int ntiles_n = (p.nw + BN - 1) / BN, ntiles_m = (p.mw + BM - 1) / BM;
  const int per_group = ntiles_n * ntiles_m;
  auto tile_of = [&](int t) {
    const int g = t / per_group, r = t % per_group;
    const int m0 = (r / ntiles_n) * BM, n0 = (r % ntiles_n) * BN;
    const int r0 = p.offsets[g];
    Tile tile;
    tile.a = p.a_rows != nullptr ? p.a + m0 : p.a + r0 * p.lda + m0;
    tile.lda = p.lda;
    tile.a_rows = p.a_rows != nullptr ? p.a_rows + r0 : nullptr;
    tile.a_left = p.mw - m0;
    tile.b = p.b_rows != nullptr ? p.b + n0 : p.b + r0 * p.ldb + n0;
    tile.ldb = p.ldb;
    tile.b_rows = p.b_rows != nullptr ? p.b_rows + r0 : nullptr;
    tile.b_left = p.nw - n0;
    tile.k = p.offsets[g + 1] - r0;
    tile.r0 = r0;
    tile.g = g;
    tile.m0 = m0;
    tile.n0 = n0;
    return tile;
  };
  auto epilogue = [&](const Tile& tile, const Acc& acc, int wg, std::uint32_t staging) {
    if constexpr (STAGED) {
      const int m0 = tile.m0 + wg * 64, cols = p.nw - tile.n0 < BN ? p.nw - tile.n0 : BN;
      const std::uint32_t stage = staging + wg * 64 * STAGING_LD;
      stage_rows(acc, stage, 1 + wg);
      copy_staged_rows(
          stage, static_cast<bf16*>(p.c) + (static_cast<std::int64_t>(tile.g) * p.mw + m0) * p.nw + tile.n0,
          p.nw, p.mw - m0, static_cast<std::uint32_t>(cols) * 2);
    } else {
      const int m = tile.m0 + wg * 64 + acc_row(0), c0 = tile.n0 + acc_col(0);
      OutT* lo = static_cast<OutT*>(p.c) + (static_cast<std::int64_t>(tile.g) * p.mw + m) * p.nw + c0;
      store_rows<ACCUMULATE>(acc, lo, lo + 8 * p.nw, m < p.mw, m + 8 < p.mw, p.nw - c0);
    }
  };
  // An operand read in place (no row map) comes by TMA (2-D map [rows][columns], 64 x 64 boxes at (column,
  // row)) in the k-tiles that lie wholly inside the group's rows; gathered operands, and the group's last
  // partial k-tile (whose rows past the segment must read as zeros), by cp.async.
  struct Rows {
    RowIdx<BM / 16> a;
    RowIdx<BN / 16> b;
  };
  auto prepare = [&](const Tile& tile, int kt, int tid) {
    return Rows{mnmajor_rows<BM>(tid, tile.a_rows, kt * BK, tile.k),
                mnmajor_rows<BN>(tid, tile.b_rows, kt * BK, tile.k)};
  };
  auto load = [&](const Tile& tile, int kt, std::uint32_t sa, std::uint32_t full, int tid, const Rows& rows) {
    const int k0 = kt * BK;
    const bool whole = k0 + BK <= tile.k;
    const bool a_tma = whole && p.a_rows == nullptr, b_tma = whole && p.b_rows == nullptr;
    if (tid == 0) {
      const std::uint32_t tx = (a_tma ? A_BYTES : 0) + (b_tma ? B_BYTES : 0);
      if (tx == 0) {
        mbar::arrive(full);
      } else {
        tma::arrive_expect_tx(full, tx);
        if (a_tma)
          for (int j = 0; j < BM / 64; ++j)
            tma::load_2d(sa + j * BLOCK64, &a_map, tile.m0 + 64 * j, tile.r0 + k0, full);
        if (b_tma)
          for (int j = 0; j < BN / 64; ++j)
            tma::load_2d(sa + A_BYTES + j * BLOCK64, &b_map, tile.n0 + 64 * j, tile.r0 + k0, full);
      }
    }
    if (!a_tma) load_mnmajor<BM>(sa, tid, tile.a, tile.lda, rows.a, k0, tile.k, tile.a_left);
    if (!b_tma) load_mnmajor<BN>(sa + A_BYTES, tid, tile.b, tile.ldb, rows.b, k0, tile.k, tile.b_left);
  };
  persistent_gemm<false, false, STAGES, STAGED>(p.groups * per_group, tile_of, prepare, load, epilogue);
}

int sm_count() {
  int device = 0, sms = 0;
  G4_CUDA_CHECK(cudaGetDevice(&device));
  G4_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return sms;
}

// The launchers' common start: checks the tile bound, gives the kernel smem_bytes of dynamic shared memory;
// false when there is nothing to launch.
template <class Kernel>
bool prepare_launch(Kernel kernel, int smem_bytes, std::int64_t max_tiles) {
  check(max_tiles < (1ll << 31), "grouped GEMM too large: ", max_tiles,
        " tiles (ops/cuda/grouped_gemm_ws.cu)");
  if (max_tiles == 0) return false;
  G4_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes));
  return true;
}

// Launches min(max_tiles, SMs) persistent CTAs (max_tiles: a host-side bound on the tile count) with
// smem_bytes of dynamic shared memory.
template <class Kernel, class... Args>
void launch_persistent(Kernel kernel, int smem_bytes, std::int64_t max_tiles, cudaStream_t stream,
                       const Args&... args) {
  if (!prepare_launch(kernel, smem_bytes, max_tiles)) return;
  const std::int64_t grid = max_tiles < sm_count() ? max_tiles : sm_count();
  kernel<<<static_cast<unsigned>(grid), THREADS, smem_bytes, stream>>>(args...);
  G4_CUDA_CHECK_LAUNCH();
}

}  // namespace

void grouped_gemm_rows_ws(const GroupedGemmRows& a, cudaStream_t stream) {
  const std::int64_t max_tiles = ((a.max_rows + BM - 1) / BM + a.groups) * ((a.n + BN - 1) / BN);
  // The staged epilogue's bulk copies and the TMA of A need 16-byte aligned bases (the leading dimensions
  // are multiples of 8 elements by contract); otherwise the 16-byte-store epilogue and cp.async serve.
  auto aligned16 = [](const void* ptr) { return reinterpret_cast<std::uintptr_t>(ptr) % 16 == 0; };
  const bool a_tma = a.a_rows == nullptr && aligned16(a.a);
  const bool staged = aligned16(a.c);
  // A read in place: a 2-D map [rows][K] with 64 k x 128 row boxes; its row extent is the largest TMA
  // coordinate (the row count lives on the device) and the kernel only asks for whole tiles inside the
  // groups' segments. Unused otherwise (an all-zero map, never read).
  CUtensorMap a_map{};
  if (a_tma) {
    const std::uint64_t dims[2] = {static_cast<std::uint64_t>(a.k), 0x7fffffffull};
    const std::uint64_t strides[1] = {static_cast<std::uint64_t>(a.lda) * 2};
    const std::uint32_t box[2] = {64, BM};
    a_map = tensor_map_bf16(a.a, 2, dims, strides, box);
  }
  // The weights as a 3-D tensor [groups][K][N] (or [groups][N][K] when transposed), so that the k and n
  // tails of each group read zeros rather than the next group's weights.
  const std::uint64_t k = static_cast<std::uint64_t>(a.k), n = static_cast<std::uint64_t>(a.n);
  const std::uint64_t g = static_cast<std::uint64_t>(a.groups),
                      gs = static_cast<std::uint64_t>(a.b_group_stride) * 2;
  CUtensorMap b_map;
  if (a.b_transposed) {
    const std::uint64_t dims[3] = {k, n, g}, strides[2] = {k * 2, gs};
    const std::uint32_t box[3] = {64, static_cast<std::uint32_t>(BN), 1};
    b_map = tensor_map_bf16(a.b, 3, dims, strides, box);
  } else {
    const std::uint64_t dims[3] = {n, k, g}, strides[2] = {n * 2, gs};
    const std::uint32_t box[3] = {64, 64, 1};
    b_map = tensor_map_bf16(a.b, 3, dims, strides, box);
  }
  // One kernel per (B layout, epilogue, A by TMA): the compile-time arguments picked from the run-time ones.
  auto go = [&](auto b_kmajor, auto is_staged, auto by_tma) {
    constexpr bool S = decltype(is_staged)::value;
    constexpr int smem = SmemLayout < S ? 3 : 4, S > ::bytes;
    launch_persistent(rows_ws_kernel<decltype(b_kmajor)::value, S, decltype(by_tma)::value>, smem, max_tiles,
                      stream, a, a_map, b_map);
  };
  auto with_epilogue = [&](auto b_kmajor, auto by_tma) {
    if (staged)
      go(b_kmajor, std::true_type{}, by_tma);
    else
      go(b_kmajor, std::false_type{}, by_tma);
  };
  auto with_a = [&](auto b_kmajor) {
    if (a_tma)
      with_epilogue(b_kmajor, std::true_type{});
    else
      with_epilogue(b_kmajor, std::false_type{});
  };
  if (a.b_transposed)
    with_a(std::true_type{});
  else
    with_a(std::false_type{});
}

void grouped_gemm_weight_grad_ws(const GroupedGemmWeightGrad& a, cudaStream_t stream) {
  const std::int64_t max_tiles =
      static_cast<std::int64_t>(a.groups) * ((a.mw + BM - 1) / BM) * ((a.nw + BN - 1) / BN);
  // Operands read in place get a 2-D map [rows][columns]. The row count lives on the device (offsets), so the
  // map's row extent is the largest TMA coordinate; the kernel only asks for rows inside the groups'
  // segments. A gathered operand gets no map (an all-zero one, never read).
  auto map = [](const __nv_bfloat16* base, const int* rows, int cols, std::int64_t ld) {
    if (rows != nullptr) return CUtensorMap{};
    const std::uint64_t dims[2] = {static_cast<std::uint64_t>(cols), 0x7fffffffull};
    const std::uint64_t strides[1] = {static_cast<std::uint64_t>(ld) * 2};
    const std::uint32_t box[2] = {64, 64};
    return tensor_map_bf16(base, 2, dims, strides, box);
  };
  const CUtensorMap am = map(a.a, a.a_rows, a.mw, a.lda), bm = map(a.b, a.b_rows, a.nw, a.ldb);
  constexpr int SMEM4 = SmemLayout<4, false>::bytes, SMEM_STAGED = SmemLayout<3, true>::bytes;
  // The staged epilogue stores bf16 only, from a 16-byte aligned base.
  if (!a.c_is_fp32 && reinterpret_cast<std::uintptr_t>(a.c) % 16 == 0)
    launch_persistent(weight_grad_ws_kernel<false, false, true>, SMEM_STAGED, max_tiles, stream, a, am, bm);
  else if (!a.c_is_fp32)
    launch_persistent(weight_grad_ws_kernel<false, false, false>, SMEM4, max_tiles, stream, a, am, bm);
  else if (a.accumulate)
    launch_persistent(weight_grad_ws_kernel<true, true, false>, SMEM4, max_tiles, stream, a, am, bm);
  else
    launch_persistent(weight_grad_ws_kernel<true, false, false>, SMEM4, max_tiles, stream, a, am, bm);
}

}  // namespace g4::cuda
