// Weighted expert activations (the note's §6): formulas, and backward against central differences in float64.
#include "ops/cpu/moe_activations.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "moe/moe_test_util.h"

namespace g4 {
namespace {

using test::numeric_gradient;
using test::random_vector;
using test::tolerance_ratio;

struct Case {
  ExpertActivation act;
  ActivationParams params;
  const char* name;
};

std::vector<Case> all_cases() {
  ActivationParams plain;
  ActivationParams qg;
  qg.alpha = 1.5;
  qg.linear_offset = 1.0;
  qg.limit = 0.9;  // some inputs (range ±1.2) are clamped
  ActivationParams cs;
  cs.limit = 0.8;
  return {{ExpertActivation::swiglu, plain, "swiglu"},
          {ExpertActivation::geglu, plain, "geglu"},
          {ExpertActivation::quick_geglu, plain, "quick_geglu"},
          {ExpertActivation::quick_geglu, qg, "quick_geglu_clamped_offset"},
          {ExpertActivation::relu2, plain, "relu2"},
          {ExpertActivation::clamped_swiglu, cs, "clamped_swiglu"}};
}

// Keeps inputs away from the kinks (clamp limits, relu's 0) so that central differences are exact to O(eps²).
std::vector<double> smooth_inputs(std::size_t n, std::uint32_t seed, const ActivationParams& p) {
  auto v = random_vector<double>(n, seed, -1.2, 1.2);
  for (double& x : v) {
    if (std::abs(x) < 0.05) x += 0.1;
    if (p.limit > 0 && std::abs(std::abs(x) - p.limit) < 0.05) x += 0.12;
  }
  return v;
}

TEST(MoeActivations, BackwardMatchesFiniteDifferencesInFloat64) {
  const std::int64_t rows = 5, inter = 7;
  for (const Case& c : all_cases()) {
    SCOPED_TRACE(c.name);
    const std::int64_t width = activation_input_width(c.act, inter);
    auto h = smooth_inputs(static_cast<std::size_t>(rows * width), 11, c.params);
    auto w = random_vector<double>(static_cast<std::size_t>(rows), 12, 0.2, 1.0);
    const auto g = random_vector<double>(static_cast<std::size_t>(rows * inter), 13);
    std::vector<double> out(static_cast<std::size_t>(rows * inter));
    auto loss = [&] {
      weighted_activation_forward<double>(c.act, c.params, h.data(), w.data(), rows, inter, out.data());
      return test::dot(out, g);
    };
    std::vector<double> dh(h.size()), dw(w.size());
    weighted_activation_backward<double>(c.act, c.params, h.data(), w.data(), g.data(), rows, inter,
                                         dh.data(), dw.data());
    EXPECT_LE(tolerance_ratio(dh, numeric_gradient(h, loss), 1e-8, 1e-6), 1.0);
    EXPECT_LE(tolerance_ratio(dw, numeric_gradient(w, loss), 1e-8, 1e-6), 1.0);
  }
}

TEST(MoeActivations, ClampedInputsGetZeroGradient) {
  ActivationParams p;
  p.limit = 1.0;
  const double h[2] = {3.0, -4.0};  // gate above the limit, up below −limit
  const double w = 1.0, g = 1.0;
  double dh[2], dw;
  for (ExpertActivation act : {ExpertActivation::quick_geglu, ExpertActivation::clamped_swiglu}) {
    weighted_activation_backward<double>(act, p, h, &w, &g, 1, 1, dh, &dw);
    EXPECT_EQ(dh[0], 0.0);
    EXPECT_EQ(dh[1], 0.0);
    EXPECT_NE(dw, 0.0);
  }
}

TEST(MoeActivations, GegluIsGeluTanhOfTheFirstHalfTimesTheSecondTimesTheWeight) {
  const float h[4] = {0.5f, -1.25f, 2.0f, 3.0f};  // rows 1, I 2: gate {0.5, -1.25}, up {2, 3}
  const float w = 0.25f;
  float out[2];
  weighted_activation_forward<float>(ExpertActivation::geglu, {}, h, &w, 1, 2, out);
  auto gelu = [](double x) {
    return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
  };
  EXPECT_FLOAT_EQ(out[0], static_cast<float>(gelu(0.5) * 2.0 * 0.25));
  EXPECT_FLOAT_EQ(out[1], static_cast<float>(gelu(-1.25) * 3.0 * 0.25));
}

TEST(MoeActivations, ReferenceValuesOfEveryActivation) {
  const double y1 = 0.7, y2 = -0.4, w = 0.5;
  const double h[2] = {y1, y2};
  auto sig = [](double v) { return 1 / (1 + std::exp(-v)); };
  double out;
  weighted_activation_forward<double>(ExpertActivation::swiglu, {}, h, &w, 1, 1, &out);
  EXPECT_DOUBLE_EQ(out, y1 * sig(y1) * y2 * w);
  ActivationParams qg;
  qg.linear_offset = 1.0;
  weighted_activation_forward<double>(ExpertActivation::quick_geglu, qg, h, &w, 1, 1, &out);
  EXPECT_DOUBLE_EQ(out, y1 * sig(1.702 * y1) * (y2 + 1.0) * w);
  const double r[1] = {-0.3};
  weighted_activation_forward<double>(ExpertActivation::relu2, {}, r, &w, 1, 1, &out);
  EXPECT_EQ(out, 0.0);
  const double r2[1] = {0.6};
  weighted_activation_forward<double>(ExpertActivation::relu2, {}, r2, &w, 1, 1, &out);
  EXPECT_DOUBLE_EQ(out, 0.36 * w);
  ActivationParams cs;
  cs.limit = 0.5;
  weighted_activation_forward<double>(ExpertActivation::clamped_swiglu, cs, h, &w, 1, 1, &out);
  EXPECT_DOUBLE_EQ(out, 0.5 * sig(0.5) * y2 * w);
}

TEST(MoeActivations, ZeroWeightGivesZeroOutputAndNullWeightMeansOne) {
  const auto h = random_vector<float>(2 * 2 * 3, 5);
  const float zeros[2] = {0, 0}, ones[2] = {1, 1};
  std::vector<float> a(6), b(6), c(6);
  weighted_activation_forward<float>(ExpertActivation::geglu, {}, h.data(), zeros, 2, 3, a.data());
  for (float v : a) EXPECT_EQ(v, 0.0f);
  weighted_activation_forward<float>(ExpertActivation::geglu, {}, h.data(), ones, 2, 3, b.data());
  weighted_activation_forward<float>(ExpertActivation::geglu, {}, h.data(), nullptr, 2, 3, c.data());
  EXPECT_EQ(b, c);
}

TEST(MoeActivations, FloatAndDoubleAgreeToFloatRounding) {
  const std::int64_t rows = 4, inter = 8;
  const auto hd = random_vector<double>(rows * 2 * inter, 21, -3, 3);
  const auto wd = random_vector<double>(rows, 22, 0, 1);
  std::vector<float> hf(hd.begin(), hd.end()), wf(wd.begin(), wd.end());
  std::vector<double> od(rows * inter);
  std::vector<float> of(rows * inter);
  weighted_activation_forward<double>(ExpertActivation::geglu, {}, hd.data(), wd.data(), rows, inter,
                                      od.data());
  weighted_activation_forward<float>(ExpertActivation::geglu, {}, hf.data(), wf.data(), rows, inter,
                                     of.data());
  for (std::int64_t i = 0; i < rows * inter; ++i) EXPECT_NEAR(of[i], od[i], 1e-6 * (1 + std::abs(od[i])));
}

TEST(MoeActivations, NamesRoundTripAndUnknownNameIsAnError) {
  for (const Case& c : all_cases())
    EXPECT_EQ(expert_activation_from_name(expert_activation_name(c.act)), c.act);
  EXPECT_TRUE(is_gated(ExpertActivation::geglu));
  EXPECT_FALSE(is_gated(ExpertActivation::relu2));
  EXPECT_THROW(expert_activation_from_name("gelu"), Error);
}

}  // namespace
}  // namespace g4
