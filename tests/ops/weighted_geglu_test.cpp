// Gemma 4's weighted GEGLU on the CPU (the note's §6): the formula, and the backward against central
// differences in float64.
#include "ops/cpu/weighted_geglu.h"

#include <gtest/gtest.h>

#include <cmath>

#include "ops/moe_test_util.h"

namespace g4 {
namespace {

using test::numeric_gradient;
using test::random_vector;
using test::tolerance_ratio;

TEST(WeightedGeglu, BackwardMatchesFiniteDifferencesInFloat64) {
  const std::int64_t rows = 5, inter = 7;
  auto h = random_vector<double>(static_cast<std::size_t>(rows * 2 * inter), 11, -1.2, 1.2);
  auto w = random_vector<double>(static_cast<std::size_t>(rows), 12, 0.2, 1.0);
  const auto g = random_vector<double>(static_cast<std::size_t>(rows * inter), 13);
  std::vector<double> out(static_cast<std::size_t>(rows * inter));
  auto loss = [&] {
    weighted_geglu_forward<double>(h.data(), w.data(), rows, inter, out.data());
    return test::dot(out, g);
  };
  std::vector<double> dh(h.size()), dw(w.size());
  weighted_geglu_backward<double>(h.data(), w.data(), g.data(), rows, inter, dh.data(), dw.data());
  EXPECT_LE(tolerance_ratio(dh, numeric_gradient(h, loss), 1e-8, 1e-6), 1.0);
  EXPECT_LE(tolerance_ratio(dw, numeric_gradient(w, loss), 1e-8, 1e-6), 1.0);
}

TEST(WeightedGeglu, IsGeluTanhOfTheFirstHalfTimesTheSecondTimesTheWeight) {
  const float h[4] = {0.5f, -1.25f, 2.0f, 3.0f};  // rows 1, I 2: gate {0.5, -1.25}, up {2, 3}
  const float w = 0.25f;
  float out[2];
  weighted_geglu_forward<float>(h, &w, 1, 2, out);
  auto gelu = [](double x) {
    return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
  };
  EXPECT_FLOAT_EQ(out[0], static_cast<float>(gelu(0.5) * 2.0 * 0.25));
  EXPECT_FLOAT_EQ(out[1], static_cast<float>(gelu(-1.25) * 3.0 * 0.25));
}

TEST(WeightedGeglu, ZeroWeightGivesZeroOutputAndNullWeightMeansOne) {
  const auto h = random_vector<float>(2 * 2 * 3, 5);
  const float zeros[2] = {0, 0}, ones[2] = {1, 1};
  std::vector<float> a(6), b(6), c(6);
  weighted_geglu_forward<float>(h.data(), zeros, 2, 3, a.data());
  for (float v : a) EXPECT_EQ(v, 0.0f);
  weighted_geglu_forward<float>(h.data(), ones, 2, 3, b.data());
  weighted_geglu_forward<float>(h.data(), nullptr, 2, 3, c.data());
  EXPECT_EQ(b, c);
}

TEST(WeightedGeglu, FloatAndDoubleAgreeToFloatRounding) {
  const std::int64_t rows = 4, inter = 8;
  const auto hd = random_vector<double>(rows * 2 * inter, 21, -3, 3);
  const auto wd = random_vector<double>(rows, 22, 0, 1);
  std::vector<float> hf(hd.begin(), hd.end()), wf(wd.begin(), wd.end());
  std::vector<double> od(rows * inter);
  std::vector<float> of(rows * inter);
  weighted_geglu_forward<double>(hd.data(), wd.data(), rows, inter, od.data());
  weighted_geglu_forward<float>(hf.data(), wf.data(), rows, inter, of.data());
  for (std::int64_t i = 0; i < rows * inter; ++i) EXPECT_NEAR(of[i], od[i], 1e-6 * (1 + std::abs(od[i])));
}

}  // namespace
}  // namespace g4
