// Flash attention (ops/cuda/flash_attention.h) against the CPU reference g4::attention_forward /
// attention_backward (fp32 GEMMs, softmax in double) on the same bf16-exact inputs, over causal attention,
// sliding windows, packed segments, padding masks, rows that see nothing, a KV-cache offset, GQA ratios 2 and
// 8, head_dim 256 and 512 and lengths that are not multiples of the tiles.
//
// Tolerance (relative Frobenius error, per tensor): the device rounds each output element to bf16 (relative
// 2^-9 at worst, ~1.1e-3 rms), rounds the probabilities P to bf16 before P·V and Pᵀ·dO (another ~1e-3 rms
// on each product), rounds dS to bf16 before dS·K and dSᵀ·Q (~1e-3), and takes rowsum(dO∘O) from the bf16
// output (a perturbation of dP − rowsum of relative ~2^-9). These independent ~1e-3 terms add to a few 1e-3;
// the bound is 1e-2 for out, dq, dk and dv alike. Rows that see nothing must give exactly 0 in out and dq,
// lse = -inf, and nothing may be NaN (rel_error turns a NaN into +inf).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "core/error.h"
#include "cuda_test_util.h"
#include "ops/cpu/attention.h"
#include "ops/cuda/flash_attention.h"

namespace g4::cuda::test {
namespace {

struct Case {
  std::string name;
  int D = 256, Nq = 4, Nkv = 2;
  std::int64_t Sq = 0, Sk = 0, offset = 0, window = 0;
  std::vector<std::int64_t> segment_starts;                   // packed segments (empty: one sequence)
  std::vector<std::pair<std::int64_t, std::int64_t>> hidden;  // key_mask = 0 on [a, b)
};

std::ostream& operator<<(std::ostream& os, const Case& c) {
  return os << c.name;
}

constexpr double kBound = 1e-2;

std::vector<double> to_double(const std::vector<float>& v) {
  return {v.begin(), v.end()};
}

class FlashAttentionTest : public ::testing::TestWithParam<Case> {};

TEST_P(FlashAttentionTest, MatchesCpuReference) {
  G4_SKIP_WITHOUT_CUDA();
  const Case& c = GetParam();
  const int D = c.D, Nq = c.Nq, Nkv = c.Nkv;
  const std::int64_t Sq = c.Sq, Sk = c.Sk;
  std::mt19937 rng(1234 + D + static_cast<unsigned>(Sq));
  const std::size_t nq = static_cast<std::size_t>(Sq) * Nq * D, nk = static_cast<std::size_t>(Sk) * Nkv * D;
  // Scores q·k have variance D·0.3⁴ (std 1.4 at D = 256, 2.0 at D = 512): softmax rows neither uniform nor
  // one-hot.
  const std::vector<float> q = random_bf16_values(nq, rng, 0.3f), k = random_bf16_values(nk, rng, 0.3f),
                           v = random_bf16_values(nk, rng), dout = random_bf16_values(nq, rng);

  std::vector<std::int64_t> segment;
  if (!c.segment_starts.empty()) {
    segment.assign(static_cast<std::size_t>(Sk), 0);
    for (std::int64_t j = 0; j < Sk; ++j)
      for (std::int64_t s : c.segment_starts)
        if (j >= s) ++segment[j];
  }
  std::vector<std::uint8_t> mask;
  if (!c.hidden.empty()) {
    mask.assign(static_cast<std::size_t>(Sk), 1);
    for (auto [a, b] : c.hidden) std::fill(mask.begin() + a, mask.begin() + b, 0);
  }
  AttentionVisibility vis;
  vis.queries = Sq;
  vis.keys = Sk;
  vis.query_offset = c.offset;
  vis.window = c.window;
  vis.segment = segment.empty() ? nullptr : segment.data();
  vis.key_mask = mask.empty() ? nullptr : mask.data();

  std::vector<float> ref_out(nq), ref_dq(nq), ref_dk(nk, 0.0f), ref_dv(nk, 0.0f);
  attention_forward(q.data(), k.data(), v.data(), vis, ref_out.data(), Nq, Nkv, D);
  attention_backward(q.data(), k.data(), v.data(), vis, dout.data(), ref_dq.data(), ref_dk.data(),
                     ref_dv.data(), Nq, Nkv, D);

  const RowBounds bounds = visible_row_bounds(vis);
  std::vector<std::int64_t> empty_rows;
  for (std::int64_t i = 0; i < Sq; ++i)
    if (bounds.first[i] > bounds.last[i]) empty_rows.push_back(i);

  DeviceBuffer d_q = to_device_bf16(q), d_k = to_device_bf16(k), d_v = to_device_bf16(v),
               d_dout = to_device_bf16(dout);
  DeviceBuffer d_first = to_device(bounds.first), d_last = to_device(bounds.last);
  DeviceBuffer d_mask = to_device(mask.empty() ? std::vector<std::uint8_t>(1) : mask);
  FlashVisibility fv;
  fv.queries = Sq;
  fv.keys = Sk;
  fv.first = static_cast<const std::int64_t*>(d_first.data());
  fv.last = static_cast<const std::int64_t*>(d_last.data());
  fv.key_mask = mask.empty() ? nullptr : static_cast<const std::uint8_t*>(d_mask.data());

  DeviceBuffer d_out(nq * 2), d_lse(static_cast<std::size_t>(Sq) * Nq * 4);
  DeviceBuffer d_dq(nq * 2), d_dk(nk * 2), d_dv(nk * 2), d_dq2(nq * 2), d_dk2(nk * 2), d_dv2(nk * 2);
  for (DeviceBuffer* b : {&d_out, &d_lse, &d_dq, &d_dk, &d_dv, &d_dq2, &d_dk2, &d_dv2}) poison(*b);
  auto bf = [](DeviceBuffer& b) { return static_cast<__nv_bfloat16*>(b.data()); };
  auto cbf = [](const DeviceBuffer& b) { return static_cast<const __nv_bfloat16*>(b.data()); };

  flash_attention_forward(cbf(d_q), cbf(d_k), cbf(d_v), fv, Nq, Nkv, D, bf(d_out),
                          static_cast<float*>(d_lse.data()), nullptr);
  flash_attention_backward(cbf(d_q), cbf(d_k), cbf(d_v), cbf(d_out), cbf(d_dout),
                           static_cast<const float*>(d_lse.data()), fv, Nq, Nkv, D, bf(d_dq), bf(d_dk),
                           bf(d_dv), nullptr);
  flash_attention_backward(cbf(d_q), cbf(d_k), cbf(d_v), cbf(d_out), cbf(d_dout),
                           static_cast<const float*>(d_lse.data()), fv, Nq, Nkv, D, bf(d_dq2), bf(d_dk2),
                           bf(d_dv2), nullptr);
  G4_CUDA_CHECK(cudaDeviceSynchronize());

  const std::vector<float> out = from_device_bf16(d_out, nq), dq = from_device_bf16(d_dq, nq),
                           dk = from_device_bf16(d_dk, nk), dv = from_device_bf16(d_dv, nk);
  const std::vector<float> lse = from_device<float>(d_lse, static_cast<std::size_t>(Sq) * Nq);
  const double e_out = rel_error(out, to_double(ref_out)), e_dq = rel_error(dq, to_double(ref_dq)),
               e_dk = rel_error(dk, to_double(ref_dk)), e_dv = rel_error(dv, to_double(ref_dv));
  std::printf("[ %s ] rel. errors: out %.2e  dq %.2e  dk %.2e  dv %.2e  (%zu rows see nothing)\n",
              c.name.c_str(), e_out, e_dq, e_dk, e_dv, empty_rows.size());
  EXPECT_LT(e_out, kBound);
  EXPECT_LT(e_dq, kBound);
  EXPECT_LT(e_dk, kBound);
  EXPECT_LT(e_dv, kBound);

  for (std::int64_t i = 0; i < Sq; ++i)
    for (int h = 0; h < Nq; ++h) {
      const float l = lse[static_cast<std::size_t>(h) * Sq + i];
      const bool empty = bounds.first[i] > bounds.last[i];
      if (empty) {
        ASSERT_TRUE(std::isinf(l) && l < 0) << "lse of empty row " << i << " head " << h << " is " << l;
        for (int d = 0; d < D; ++d) {
          const std::size_t at = (static_cast<std::size_t>(i) * Nq + h) * D + d;
          ASSERT_EQ(out[at], 0.0f) << "out of empty row " << i;
          ASSERT_EQ(dq[at], 0.0f) << "dq of empty row " << i;
        }
      } else {
        ASSERT_TRUE(std::isfinite(l)) << "lse of row " << i << " head " << h << " is " << l;
      }
    }

  // Determinism: a second backward is bit-identical.
  const auto bits = [](const DeviceBuffer& b, std::size_t n) { return from_device<std::uint16_t>(b, n); };
  EXPECT_TRUE(bits(d_dq, nq) == bits(d_dq2, nq)) << "dq differs between two runs";
  EXPECT_TRUE(bits(d_dk, nk) == bits(d_dk2, nk)) << "dk differs between two runs";
  EXPECT_TRUE(bits(d_dv, nk) == bits(d_dv2, nk)) << "dv differs between two runs";
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, FlashAttentionTest,
    ::testing::Values(
        Case{"D256_GQA2_Causal_300", 256, 4, 2, 300, 300, 0, 0, {}, {}},
        Case{"D512_GQA8_Causal_77", 512, 8, 1, 77, 77, 0, 0, {}, {}},
        Case{"D256_GQA8_Window64_300", 256, 8, 1, 300, 300, 0, 64, {}, {}},
        Case{"D512_GQA2_Window100_300", 512, 4, 2, 300, 300, 0, 100, {}, {}},
        Case{"D512_GQA2_TwoSegments_300", 512, 4, 2, 300, 300, 0, 0, {129}, {}},
        Case{"D256_GQA2_ThreeSegments_Window40_200", 256, 4, 2, 200, 200, 0, 40, {50, 130}, {}},
        // keys 0..69 hidden: rows 0..69 see nothing (query block 0 entirely); a hole and 37 padding keys.
        Case{"D256_GQA2_KeyMask_EmptyRows_200",
             256,
             4,
             2,
             200,
             200,
             0,
             0,
             {},
             {{0, 70}, {90, 100}, {163, 200}}},
        Case{
            "D512_GQA8_KeyMask_EmptyRows_150", 512, 8, 1, 150, 150, 0, 0, {}, {{0, 5}, {40, 45}, {120, 150}}},
        // the last 77 of 300 keys are the queries (KV cache), with a window and a segment boundary.
        Case{"D512_GQA2_KvCache_Window128_77of300", 512, 4, 2, 77, 300, 223, 128, {250}, {}},
        Case{"D256_GQA8_KvCache_77of300", 256, 8, 1, 77, 300, 223, 0, {}, {{10, 20}}}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

TEST(FlashAttention, RejectsUnsupportedHeadDim) {
  G4_SKIP_WITHOUT_CUDA();
  FlashVisibility fv;
  EXPECT_THROW(flash_attention_forward(nullptr, nullptr, nullptr, fv, 4, 2, 128, nullptr, nullptr, nullptr),
               g4::Error);
  EXPECT_THROW(flash_attention_backward(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, fv, 4, 2, 320,
                                        nullptr, nullptr, nullptr, nullptr),
               g4::Error);
}

}  // namespace
}  // namespace g4::cuda::test
