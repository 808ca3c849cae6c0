// Linear (model/linear.h) against float64 loops: forward y = x · Wᵀ, backward adds dyᵀ · x into the bound
// gradient on every call and returns dy · W (or adds it into a given dx), and a backward without a gradient
// tensor is an error rather than a write through a null pointer.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "model/linear.h"
#include "test_errors.h"

namespace g4 {
namespace {

Tensor random_tensor(Shape shape, unsigned seed) {
  Tensor t(DType::f32, std::move(shape));
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = dist(rng);
  return t;
}

TEST(Linear, ForwardAndBackwardMatchFloat64LoopsAndAccumulate) {
  const std::int64_t M = 4, N = 3, K = 5;
  const Tensor x = random_tensor({M, K}, 1), w = random_tensor({N, K}, 2), dy = random_tensor({M, N}, 3);
  Tensor grad(DType::f32, {N, K});
  const Linear linear(w, &grad);
  const Tensor y = linear.forward(x);
  const Tensor dx = linear.backward(x, dy);
  Tensor dx_sum = dx.clone();
  linear.backward_add(x, dy, dx_sum);  // a second pass: grad doubles, dx_sum = 2 dx
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t n = 0; n < N; ++n) {
      double want = 0;
      for (std::int64_t k = 0; k < K; ++k)
        want += static_cast<double>(x.f32()[m * K + k]) * w.f32()[n * K + k];
      EXPECT_NEAR(y.f32()[m * N + n], want, 1e-5 * (1 + std::abs(want)));
    }
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t k = 0; k < K; ++k) {
      double want = 0;
      for (std::int64_t n = 0; n < N; ++n)
        want += static_cast<double>(dy.f32()[m * N + n]) * w.f32()[n * K + k];
      EXPECT_NEAR(dx.f32()[m * K + k], want, 1e-5 * (1 + std::abs(want)));
      EXPECT_NEAR(dx_sum.f32()[m * K + k], 2 * want, 2e-5 * (1 + std::abs(want)));
    }
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t k = 0; k < K; ++k) {
      double want = 0;
      for (std::int64_t m = 0; m < M; ++m)
        want += static_cast<double>(dy.f32()[m * N + n]) * x.f32()[m * K + k];
      EXPECT_NEAR(grad.f32()[n * K + k], 2 * want, 2e-5 * (1 + std::abs(want)));
    }
  EXPECT_NE(test::error_of([&] { Linear(w).backward(x, dy); }), "");
}

}  // namespace
}  // namespace g4
