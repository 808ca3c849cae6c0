// Grouped GEMM against plain host loops, on segment sizes that include empty groups, single rows and rows
// that straddle tile edges, and on K/N that are multiples of 8 but not of the tile sizes.
//
// Tolerance: inputs are bf16-exact on both sides and the device accumulates in fp32, so the only sizeable
// error is the final rounding of the output to bf16 (relative 2^-9 per element, about 1.1e-3 in the Frobenius
// norm); fp32 outputs differ only by summation order (< 1e-5). Bounds: 4e-3 for bf16 outputs, 1e-5 for fp32
// ones.
#include <algorithm>
#include <numeric>
#include <string>

#include "cuda_test_util.h"
#include "ops/cuda/grouped_gemm.h"

namespace g4::cuda::test {
namespace {

struct Segments {
  std::vector<int> offsets, tile_offsets;
  int rows() const { return offsets.back(); }
};

Segments make_segments(const std::vector<int>& sizes) {
  Segments s{{0}, {0}};
  for (int n : sizes) {
    s.offsets.push_back(s.offsets.back() + n);
    s.tile_offsets.push_back(s.tile_offsets.back() + (n + grouped_gemm_block_m - 1) / grouped_gemm_block_m);
  }
  return s;
}

// A row map for a gathered operand: row r of the permuted operand is row map[r] of a source with
// `source_rows` rows (repeats allowed, as a token routed to several experts), or the identity when not
// gathered.
std::vector<int> row_map(int rows, int source_rows, bool gathered, std::mt19937& rng) {
  std::vector<int> map(rows);
  for (int r = 0; r < rows; ++r) map[r] = gathered ? static_cast<int>(rng() % source_rows) : r;
  return map;
}

// pad > 0: A and C get leading dimensions K + pad and N + pad; A's padding columns hold NaN (read, they would
// poison the result) and C's must keep their poison bytes (no store past column N).
void check_rows_gemm(const std::vector<int>& sizes, int K, int N, bool b_transposed, std::uint32_t seed,
                     bool gathered = false, int pad = 0) {
  std::mt19937 rng(seed);
  Segments seg = make_segments(sizes);
  const int G = static_cast<int>(sizes.size()), M = seg.rows();
  const int S = gathered ? M + 50 : M;  // rows of the (unpermuted) source of A
  const int lda = K + pad, ldc = N + pad;
  auto a = random_bf16_values(static_cast<std::size_t>(S) * lda, rng);
  for (int r = 0; r < S; ++r)
    for (int k = K; k < lda; ++k) a[static_cast<std::size_t>(r) * lda + k] = NAN;
  auto b = random_bf16_values(static_cast<std::size_t>(G) * K * N, rng);
  auto map = row_map(M, S, gathered, rng);
  auto da = to_device_bf16(a), db = to_device_bf16(b), dmap = to_device(map);
  auto doff = to_device(seg.offsets), dtile = to_device(seg.tile_offsets);
  DeviceBuffer dc(static_cast<std::size_t>(M) * ldc * 2 + 16);
  poison(dc);
  // max_rows larger than the live rows, as in the MoE layer (masked slots).
  grouped_gemm_rows({da.as<__nv_bfloat16>(), lda, gathered ? dmap.as<int>() : nullptr, db.as<__nv_bfloat16>(),
                     static_cast<std::int64_t>(K) * N, b_transposed, dc.as<__nv_bfloat16>(), ldc, K, N, G,
                     M + 37, doff.as<int>(), dtile.as<int>()},
                    nullptr);
  G4_CUDA_CHECK(cudaDeviceSynchronize());
  auto c_all = from_device_bf16(dc, static_cast<std::size_t>(M) * ldc);
  std::vector<float> c(static_cast<std::size_t>(M) * N);
  int padding_written = 0;
  for (int r = 0; r < M; ++r) {
    for (int n = 0; n < N; ++n)
      c[static_cast<std::size_t>(r) * N + n] = c_all[static_cast<std::size_t>(r) * ldc + n];
    for (int n = N; n < ldc; ++n)
      padding_written += !std::isnan(c_all[static_cast<std::size_t>(r) * ldc + n]);
  }
  EXPECT_EQ(padding_written, 0) << "stores past column N";
  std::vector<double> ref(c.size());
  for (int g = 0; g < G; ++g)
    for (int r = seg.offsets[g]; r < seg.offsets[g + 1]; ++r)
      for (int n = 0; n < N; ++n) {
        double acc = 0.0;
        for (int k = 0; k < K; ++k) {
          double bv = b_transposed ? b[(static_cast<std::size_t>(g) * N + n) * K + k]
                                   : b[(static_cast<std::size_t>(g) * K + k) * N + n];
          acc += a[static_cast<std::size_t>(map[r]) * lda + k] * bv;
        }
        ref[static_cast<std::size_t>(r) * N + n] = acc;
      }
  EXPECT_LT(rel_error(c, ref), 4e-3) << "K " << K << " N " << N << " transposed " << b_transposed
                                     << " gathered " << gathered << " pad " << pad;
}

TEST(GroupedGemm, RowsMatchHostLoopsWithEmptyAndRaggedGroups) {
  G4_SKIP_WITHOUT_CUDA();
  check_rows_gemm({0, 1, 127, 128, 129, 300, 0}, 136, 200, false, 1);
  check_rows_gemm({0, 1, 127, 128, 129, 300, 0}, 136, 200, true, 2);
  check_rows_gemm({3, 0, 200}, 128, 64, false,
                  7);  // K a multiple of the 64-deep k-tile; N narrower than a tile
}

TEST(GroupedGemm, RowsReadThroughARowMapMatchHostLoops) {
  G4_SKIP_WITHOUT_CUDA();
  check_rows_gemm({0, 1, 127, 128, 129, 300, 0}, 136, 200, false, 8, /*gathered=*/true);
  check_rows_gemm({5, 0, 260, 64}, 96, 512, true, 9, /*gathered=*/true);
}

TEST(GroupedGemm, RowsWithWideNMatchHostLoops) {
  G4_SKIP_WITHOUT_CUDA();
  check_rows_gemm({5, 0, 260, 64}, 96, 512, false, 3);
  check_rows_gemm({5, 0, 260, 64}, 96, 512, true, 4);
}

// Leading dimensions wider than K and N: TMA's k extent and the staged epilogue's row length must stop at K
// and N, and every path must read A and write C at its own stride.
TEST(GroupedGemm, RowsWithPaddedLeadingDimensionsMatchHostLoops) {
  G4_SKIP_WITHOUT_CUDA();
  check_rows_gemm({0, 1, 127, 128, 129, 300, 0}, 136, 200, false, 17, /*gathered=*/false, /*pad=*/24);
  check_rows_gemm({5, 0, 260, 64}, 96, 512, true, 18, /*gathered=*/false, /*pad=*/8);
  check_rows_gemm({5, 0, 260, 64}, 96, 512, false, 19, /*gathered=*/true, /*pad=*/16);
}

TEST(GroupedGemmRows, AllGroupsEmptyWritesNothing) {
  G4_SKIP_WITHOUT_CUDA();
  Segments seg = make_segments({0, 0, 0});
  auto doff = to_device(seg.offsets), dtile = to_device(seg.tile_offsets);
  DeviceBuffer a(64 * 16), b(3 * 64 * 16 * 2), c(64);
  G4_CUDA_CHECK(cudaMemset(c.data(), 0x7, c.bytes()));
  grouped_gemm_rows({a.as<__nv_bfloat16>(), 16, nullptr, b.as<__nv_bfloat16>(), 16 * 16, false,
                     c.as<__nv_bfloat16>(), 16, 16, 16, 3, 8, doff.as<int>(), dtile.as<int>()},
                    nullptr);
  G4_CUDA_CHECK(cudaDeviceSynchronize());
  auto bytes = from_device<std::uint8_t>(c, 64);
  EXPECT_TRUE(std::all_of(bytes.begin(), bytes.end(), [](std::uint8_t v) { return v == 0x7; }));
}

void check_weight_grad(const std::vector<int>& sizes, int Mw, int Nw, bool fp32, std::uint32_t seed,
                       bool gathered = false) {
  std::mt19937 rng(seed);
  Segments seg = make_segments(sizes);
  const int G = static_cast<int>(sizes.size()), R = seg.rows();
  const int S = gathered ? R + 40 : R;
  auto a = random_bf16_values(static_cast<std::size_t>(S) * Mw, rng);
  auto b = random_bf16_values(static_cast<std::size_t>(S) * Nw, rng);
  auto c0 = random_bf16_values(static_cast<std::size_t>(G) * Mw * Nw, rng);
  auto amap = row_map(R, S, gathered, rng), bmap = row_map(R, S, gathered, rng);
  auto da = to_device_bf16(a), db = to_device_bf16(b), doff = to_device(seg.offsets);
  auto damap = to_device(amap), dbmap = to_device(bmap);
  std::size_t cn = static_cast<std::size_t>(G) * Mw * Nw;
  DeviceBuffer dc = fp32 ? to_device(c0) : DeviceBuffer(cn * 2);
  if (!fp32) poison(dc);
  grouped_gemm_weight_grad(
      {da.as<__nv_bfloat16>(), Mw, gathered ? damap.as<int>() : nullptr, db.as<__nv_bfloat16>(), Nw,
       gathered ? dbmap.as<int>() : nullptr, dc.data(), fp32, fp32, Mw, Nw, G, doff.as<int>()},
      nullptr);
  G4_CUDA_CHECK(cudaDeviceSynchronize());
  auto c = fp32 ? from_device<float>(dc, cn) : from_device_bf16(dc, cn);
  std::vector<double> ref(cn);
  for (int g = 0; g < G; ++g)
    for (int m = 0; m < Mw; ++m)
      for (int n = 0; n < Nw; ++n) {
        double acc = fp32 ? c0[(static_cast<std::size_t>(g) * Mw + m) * Nw + n] : 0.0;
        for (int r = seg.offsets[g]; r < seg.offsets[g + 1]; ++r)
          acc += static_cast<double>(a[static_cast<std::size_t>(amap[r]) * Mw + m]) *
                 b[static_cast<std::size_t>(bmap[r]) * Nw + n];
        ref[(static_cast<std::size_t>(g) * Mw + m) * Nw + n] = acc;
      }
  EXPECT_LT(rel_error(c, ref), fp32 ? 1e-5 : 4e-3) << "fp32 " << fp32;
}

TEST(GroupedGemm, WeightGradAccumulatesFp32AndOverwritesBf16) {
  G4_SKIP_WITHOUT_CUDA();
  check_weight_grad({0, 1, 33, 200, 0, 77}, 136, 200, true, 5);
  check_weight_grad({0, 1, 33, 200, 0, 77}, 136, 200, false, 6);
  // A last n-tile of 8 columns and a last m-tile of 8 rows (of which one consumer warpgroup holds none).
  check_weight_grad({0, 1, 33, 200, 0, 77}, 136, 264, true, 20);
  check_weight_grad({0, 1, 33, 200, 0, 77}, 136, 264, false, 21);
}

TEST(GroupedGemm, WeightGradReadsThroughRowMaps) {
  G4_SKIP_WITHOUT_CUDA();
  check_weight_grad({0, 1, 33, 200, 0, 77}, 136, 200, true, 10, /*gathered=*/true);
}

// Enough tiles (several hundred, over 132 SMs) that every CTA of the persistent kernel walks
// several tiles, so its shared-memory ring wraps across tile boundaries; K of 200 leaves a k-tail.
std::vector<int> many_segments(int groups, int max_rows, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int> sizes(groups);
  for (int& n : sizes) n = static_cast<int>(rng() % (max_rows + 1));
  sizes[3] = 0;
  return sizes;
}

TEST(GroupedGemm, ManyTilesPerCtaMatchHostLoops) {
  G4_SKIP_WITHOUT_CUDA();
  check_rows_gemm(many_segments(150, 200, 11), 200, 264, false, 12, /*gathered=*/true);
  check_rows_gemm(many_segments(150, 200, 13), 200, 264, true, 14);
  check_weight_grad(many_segments(200, 150, 15), 72, 136, true, 16, /*gathered=*/true);
}

}  // namespace
}  // namespace g4::cuda::test
