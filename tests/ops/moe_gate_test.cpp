// Gemma4Gate (the note's §2): forward properties, exact constants, and backward against finite differences.
#include "ops/cpu/moe_gate.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <type_traits>

#include "core/dtype.h"
#include "ops/moe_test_util.h"

namespace g4 {
namespace {

using test::numeric_gradient;
using test::random_vector;
using test::tolerance_ratio;

TEST(Gemma4Gate, RootSizeIsPythonsFloatHToTheMinusHalfRoundedOnce) {
  // Python: 2816 ** -0.5 == 0.018844459036110227; a bf16 buffer would hold 0.01879883.
  EXPECT_EQ(gemma4_router_root_size<double>(2816), 0.018844459036110227);
  EXPECT_EQ(gemma4_router_root_size<float>(2816), static_cast<float>(0.018844459036110227));
  EXPECT_NE(gemma4_router_root_size<float>(2816), round_to_bf16(0.018844459036110227f));
}

TEST(Gemma4Gate, WeightsAreFp32SumToOneAreSortedAndIndicesAreDistinctAndInRange) {
  const Gemma4GateConfig cfg{16, 8, 3, 1e-6};
  const std::int64_t T = 10;
  const auto x = random_vector<float>(T * 16, 1, -3, 3);
  const auto proj = random_vector<float>(8 * 16, 2);
  const auto scale = random_vector<float>(16, 3, 0.5, 1.5);
  std::vector<float> w(T * 3);
  std::vector<std::int64_t> idx(T * 3);
  static_assert(std::is_same_v<decltype(w)::value_type, float>);
  moe_gate_forward<float>(cfg, x.data(), proj.data(), scale.data(), T, w.data(), idx.data(), nullptr);
  for (std::int64_t t = 0; t < T; ++t) {
    float sum = 0;
    for (int k = 0; k < 3; ++k) {
      EXPECT_GE(w[t * 3 + k], 0.0f);
      EXPECT_TRUE(idx[t * 3 + k] >= 0 && idx[t * 3 + k] < 8);
      if (k) {
        EXPECT_GE(w[t * 3 + k - 1], w[t * 3 + k]);
      }
      for (int j = 0; j < k; ++j) EXPECT_NE(idx[t * 3 + j], idx[t * 3 + k]);
      sum += w[t * 3 + k];
    }
    EXPECT_NEAR(sum, 1.0f, 1e-6f);
  }
}

// Reference in double, written out step by step as in §2.
void reference_gate(const std::vector<double>& x, const std::vector<double>& proj,
                    const std::vector<double>& scale, std::int64_t T, std::int64_t H, std::int64_t E,
                    std::int64_t K, std::vector<double>* w, std::vector<std::int64_t>* idx) {
  const double root = std::pow(static_cast<double>(H), -0.5);
  for (std::int64_t t = 0; t < T; ++t) {
    double ms = 0;
    for (std::int64_t j = 0; j < H; ++j) ms += x[t * H + j] * x[t * H + j];
    ms = ms / H + 1e-6;
    std::vector<double> logits(E, 0.0), p(E);
    for (std::int64_t e = 0; e < E; ++e)
      for (std::int64_t j = 0; j < H; ++j)
        logits[e] += x[t * H + j] / std::sqrt(ms) * scale[j] * root * proj[e * H + j];
    double mx = *std::max_element(logits.begin(), logits.end()), s = 0;
    for (std::int64_t e = 0; e < E; ++e) s += (p[e] = std::exp(logits[e] - mx));
    for (double& v : p) v /= s;
    std::vector<std::int64_t> order(E);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return p[a] > p[b]; });
    double sk = 0;
    for (std::int64_t k = 0; k < K; ++k) sk += p[order[k]];
    for (std::int64_t k = 0; k < K; ++k) {
      (*w)[t * K + k] = p[order[k]] / sk;
      (*idx)[t * K + k] = order[k];
    }
  }
}

TEST(Gemma4Gate, MatchesAStepByStepReference) {
  const std::int64_t T = 6, H = 12, E = 7, K = 2;
  const auto x = random_vector<double>(T * H, 4, -2, 2);
  const auto proj = random_vector<double>(E * H, 5, -2, 2);
  const auto scale = random_vector<double>(H, 6, 0.5, 1.5);
  std::vector<double> w(T * K), wr(T * K);
  std::vector<std::int64_t> idx(T * K), idxr(T * K);
  moe_gate_forward<double>({H, E, K, 1e-6}, x.data(), proj.data(), scale.data(), T, w.data(), idx.data(),
                           nullptr);
  reference_gate(x, proj, scale, T, H, E, K, &wr, &idxr);
  EXPECT_EQ(idx, idxr);
  EXPECT_LE(tolerance_ratio(w, wr, 1e-14, 1e-12), 1.0);
}

TEST(Gemma4Gate, IsInvariantToTheScaleOfItsInputBecauseItNormsFirst) {
  const std::int64_t T = 3, H = 8, E = 4, K = 2;
  auto x = random_vector<double>(T * H, 7);
  const auto proj = random_vector<double>(E * H, 8);
  const std::vector<double> scale(H, 1.0);
  std::vector<double> w1(T * K), w2(T * K);
  std::vector<std::int64_t> i1(T * K), i2(T * K);
  moe_gate_forward<double>({H, E, K, 0.0}, x.data(), proj.data(), scale.data(), T, w1.data(), i1.data(),
                           nullptr);
  for (double& v : x) v *= 37.0;
  moe_gate_forward<double>({H, E, K, 0.0}, x.data(), proj.data(), scale.data(), T, w2.data(), i2.data(),
                           nullptr);
  EXPECT_EQ(i1, i2);
  EXPECT_LE(tolerance_ratio(w1, w2, 1e-15, 1e-12), 1.0);
}

TEST(Gemma4Gate, BackwardMatchesFiniteDifferencesForInputScaleAndProjection) {
  const std::int64_t T = 4, H = 6, E = 5, K = 3;
  const Gemma4GateConfig cfg{H, E, K, 1e-6};
  auto x = random_vector<double>(T * H, 9, -2, 2);
  auto proj = random_vector<double>(E * H, 10, -3, 3);
  auto scale = random_vector<double>(H, 11, 0.5, 1.5);
  const auto g = random_vector<double>(T * K, 12);
  std::vector<double> w(T * K);
  std::vector<std::int64_t> idx(T * K), idx0(T * K);
  Gemma4GateContext<double> ctx;
  moe_gate_forward<double>(cfg, x.data(), proj.data(), scale.data(), T, w.data(), idx0.data(), &ctx);
  std::vector<double> dx(T * H), dscale(H, 0.0), dproj(E * H, 0.0);
  moe_gate_backward<double>(cfg, proj.data(), scale.data(), ctx, g.data(), dx.data(), dscale.data(),
                            dproj.data());
  auto loss = [&] {
    moe_gate_forward<double>(cfg, x.data(), proj.data(), scale.data(), T, w.data(), idx.data(), nullptr);
    EXPECT_EQ(idx, idx0) << "a perturbation flipped the top-k choice; pick another seed";
    return test::dot(w, g);
  };
  EXPECT_LE(tolerance_ratio(dx, numeric_gradient(x, loss), 1e-8, 1e-5), 1.0);
  EXPECT_LE(tolerance_ratio(dscale, numeric_gradient(scale, loss), 1e-8, 1e-5), 1.0);
  EXPECT_LE(tolerance_ratio(dproj, numeric_gradient(proj, loss), 1e-8, 1e-5), 1.0);
}

TEST(Gemma4Gate, ParameterGradientsAccumulate) {
  const std::int64_t T = 2, H = 4, E = 4, K = 2;
  const Gemma4GateConfig cfg{H, E, K, 1e-6};
  const auto x = random_vector<float>(T * H, 13);
  const auto proj = random_vector<float>(E * H, 14);
  const auto scale = random_vector<float>(H, 15, 0.5, 1.5);
  const auto g = random_vector<float>(T * K, 16);
  std::vector<float> w(T * K), dx(T * H), ds1(H, 0.f), dp1(E * H, 0.f);
  std::vector<std::int64_t> idx(T * K);
  Gemma4GateContext<float> ctx;
  moe_gate_forward<float>(cfg, x.data(), proj.data(), scale.data(), T, w.data(), idx.data(), &ctx);
  moe_gate_backward<float>(cfg, proj.data(), scale.data(), ctx, g.data(), dx.data(), ds1.data(), dp1.data());
  std::vector<float> ds2 = ds1, dp2 = dp1;
  moe_gate_backward<float>(cfg, proj.data(), scale.data(), ctx, g.data(), dx.data(), ds2.data(), dp2.data());
  for (std::int64_t j = 0; j < H; ++j) EXPECT_FLOAT_EQ(ds2[j], 2 * ds1[j]);
  for (std::int64_t j = 0; j < E * H; ++j) EXPECT_FLOAT_EQ(dp2[j], 2 * dp1[j]);
}

TEST(Gemma4Gate, TopKBreaksTiesTowardTheLowerExpertAndRanksNaNLast) {
  const double row[5] = {0.1, 0.3, NAN, 0.3, 0.2};
  std::int64_t out[3];
  topk_descending(row, 5, 3, out);
  EXPECT_EQ(out[0], 1);
  EXPECT_EQ(out[1], 3);
  EXPECT_EQ(out[2], 4);
}

TEST(Gemma4Gate, PerExpertScaleMultipliesTheChosenExpertsWeight) {
  const float scale[3] = {1.0f, 2.0f, 0.5f};
  const std::int64_t idx[4] = {1, 2, 0, -1};
  float w[4] = {0.6f, 0.4f, 1.0f, 0.3f};
  apply_per_expert_scale(scale, idx, 2, 2, w);
  EXPECT_FLOAT_EQ(w[0], 1.2f);
  EXPECT_FLOAT_EQ(w[1], 0.2f);
  EXPECT_FLOAT_EQ(w[2], 1.0f);
  EXPECT_FLOAT_EQ(w[3], 0.3f);
}

}  // namespace
}  // namespace g4
