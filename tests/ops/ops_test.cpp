// The op interface (ops/ops.h) on the host: each op against a plain float64 loop written here, backward ops
// against central finite differences of their forward in float64 terms, the accumulation conventions (+=
// into parameter gradients), packed attention rows against per-row kernel calls, and shape and id errors.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "ops/cpu/attention.h"
#include "ops/ops.h"
#include "test_errors.h"

namespace g4 {
namespace {

Tensor random_tensor(Shape shape, unsigned seed, float scale = 1.0f) {
  Tensor t(DType::f32, std::move(shape));
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = dist(rng);
  return t;
}

// Largest |a - b| relative to the largest |b|.
double relative_error(const Tensor& a, const std::vector<double>& b) {
  double diff = 0, top = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(a.f32()[i]) - b[i]));
    top = std::max(top, std::abs(b[i]));
  }
  return diff / top;
}

TEST(Ops, LinearAndItsGradientsMatchFloat64Loops) {
  const std::int64_t M = 5, N = 7, K = 9;
  const Tensor x = random_tensor({M, K}, 1), w = random_tensor({N, K}, 2), dy = random_tensor({M, N}, 3);
  std::vector<double> y(M * N), dw(N * K), dx(M * K);
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t k = 0; k < K; ++k) {
        y[m * N + n] += double{x.f32()[m * K + k]} * w.f32()[n * K + k];
        dw[n * K + k] += double{dy.f32()[m * N + n]} * x.f32()[m * K + k];
        dx[m * K + k] += double{dy.f32()[m * N + n]} * w.f32()[n * K + k];
      }
  EXPECT_LT(relative_error(ops::linear(x, w), y), 1e-6);
  Tensor g(DType::f32, {N, K});
  ops::linear_backward_weight(dy, x, g);
  ops::linear_backward_weight(dy, x, g);  // accumulates: twice the gradient
  for (double& v : dw) v *= 2;
  EXPECT_LT(relative_error(g, dw), 1e-6);
  Tensor d = ops::linear_backward_input(dy, w);
  EXPECT_LT(relative_error(d, dx), 1e-6);
  ops::linear_backward_input_add_(d, dy, w);
  for (double& v : dx) v *= 2;
  EXPECT_LT(relative_error(d, dx), 1e-6);
  EXPECT_NE(test::error_of([&] {
              ops::linear(random_tensor({M, K + 1}, 4), w);
            }).find("op linear"),
            std::string::npos);
}

TEST(Ops, EmbeddingGathersScaledRowsScattersInTokenOrderAndRejectsBadIds) {
  const Tensor table = random_tensor({6, 4}, 5);
  const std::vector<std::int64_t> ids{3, 0, 3};
  const Tensor e = ops::embedding(table, ids, 2.0f, "vocab_size");
  for (std::int64_t t = 0; t < 3; ++t)
    for (int i = 0; i < 4; ++i) EXPECT_EQ(e.f32()[t * 4 + i], table.f32()[ids[t] * 4 + i] * 2.0f);
  Tensor dtable(DType::f32, {6, 4});
  ops::embedding_backward(e, ids, 0.5f, dtable);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(dtable.f32()[3 * 4 + i], e.f32()[i] * 0.5f + e.f32()[8 + i] * 0.5f);
    EXPECT_EQ(dtable.f32()[0 * 4 + i], e.f32()[4 + i] * 0.5f);
    EXPECT_EQ(dtable.f32()[1 * 4 + i], 0.0f);
  }
  const std::vector<std::int64_t> bad{6};
  EXPECT_EQ(test::error_of([&] { ops::embedding(table, bad, 1.0f, "vocab_size"); }),
            "token id 6 is out of range for vocab_size (6 rows)");
  const std::vector<std::int64_t> negative{-1};
  EXPECT_NE(test::error_of([&] { ops::embedding(table, negative, 1.0f, "vocab_size"); }), "");
}

// Finite differences of sum(out · dout) through geglu: the backward's two gradients.
TEST(Ops, GegluBackwardMatchesFiniteDifferences) {
  const Tensor gate = random_tensor({3, 5}, 6), up = random_tensor({3, 5}, 7),
               dout = random_tensor({3, 5}, 8);
  const ops::GegluGrads g = ops::geglu_backward(gate, up, dout);
  auto gelu = [](double v) {
    return 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
  };
  for (std::int64_t i = 0; i < gate.numel(); ++i) {
    const double a = gate.f32()[i], b = up.f32()[i], d = dout.f32()[i], h = 1e-4;
    EXPECT_NEAR(g.gate.f32()[i], d * b * (gelu(a + h) - gelu(a - h)) / (2 * h), 1e-4);
    EXPECT_NEAR(g.up.f32()[i], d * gelu(a), 1e-5);
    EXPECT_NEAR(ops::geglu(gate, up).f32()[i], gelu(a) * b, 1e-5);
  }
}

TEST(Ops, RmsNormBackwardMatchesFiniteDifferencesAndAccumulatesTheWeightGradient) {
  const Tensor x = random_tensor({4, 6}, 9), w = random_tensor({6}, 10), dy = random_tensor({4, 6}, 11);
  const float eps = 1e-6f;
  Tensor dw(DType::f32, {6});
  const Tensor dx = ops::rms_norm_backward(x, w, dy, dw, eps);
  auto objective = [&](const Tensor& xx, const Tensor& ww) {
    const Tensor y = ops::rms_norm(xx, ww, eps);
    double s = 0;
    for (std::int64_t i = 0; i < y.numel(); ++i) s += double{y.f32()[i]} * dy.f32()[i];
    return s;
  };
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    Tensor plus = x.clone(), minus = x.clone();
    plus.f32()[i] += 1e-2f;
    minus.f32()[i] -= 1e-2f;
    EXPECT_NEAR(dx.f32()[i], (objective(plus, w) - objective(minus, w)) / 2e-2, 2e-3);
  }
  for (std::int64_t i = 0; i < w.numel(); ++i) {
    Tensor plus = w.clone(), minus = w.clone();
    plus.f32()[i] += 1e-2f;
    minus.f32()[i] -= 1e-2f;
    EXPECT_NEAR(dw.f32()[i], (objective(x, plus) - objective(x, minus)) / 2e-2, 2e-3);
  }
  Tensor none;  // the weightless norm: no weight, no weight gradient
  EXPECT_EQ(ops::rms_norm_backward(x, Tensor(), dy, none, eps).shape(), x.shape());
}

// Rows of different lengths and visibilities, packed one after another, give what per-row kernel calls give.
TEST(Ops, AttentionOverPackedRowsEqualsOneKernelCallPerRow) {
  const int Nq = 4, Nkv = 2, D = 8;
  const std::vector<std::uint8_t> mask{1, 1, 0, 1, 1};
  std::vector<AttentionVisibility> rows(3);
  rows[0].queries = rows[0].keys = 6;
  rows[1].queries = rows[1].keys = 5;
  rows[1].key_mask = mask.data();
  rows[2].queries = 3;
  rows[2].keys = 7;
  rows[2].query_offset = 4;
  rows[2].window = 3;
  const Tensor q = random_tensor({14, Nq, D}, 12), k = random_tensor({18, Nkv, D}, 13),
               v = random_tensor({18, Nkv, D}, 14), dout = random_tensor({14, Nq, D}, 15);
  const Tensor out = ops::attention(q, k, v, rows);
  Tensor dk(DType::f32, k.shape()), dv(DType::f32, v.shape());
  const Tensor dq = ops::attention_backward(q, k, v, rows, dout, dk, dv);
  std::int64_t qa = 0, ka = 0;
  for (const AttentionVisibility& r : rows) {
    std::vector<float> o(r.queries * Nq * D), dqr(r.queries * Nq * D), dkr(r.keys * Nkv * D),
        dvr(r.keys * Nkv * D);
    attention_forward(q.f32() + qa * Nq * D, k.f32() + ka * Nkv * D, v.f32() + ka * Nkv * D, r, o.data(), Nq,
                      Nkv, D);
    attention_backward(q.f32() + qa * Nq * D, k.f32() + ka * Nkv * D, v.f32() + ka * Nkv * D, r,
                       dout.f32() + qa * Nq * D, dqr.data(), dkr.data(), dvr.data(), Nq, Nkv, D);
    for (std::size_t i = 0; i < o.size(); ++i) {
      ASSERT_EQ(out.f32()[qa * Nq * D + i], o[i]);
      ASSERT_EQ(dq.f32()[qa * Nq * D + i], dqr[i]);
    }
    for (std::size_t i = 0; i < dkr.size(); ++i) {
      ASSERT_EQ(dk.f32()[ka * Nkv * D + i], dkr[i]);
      ASSERT_EQ(dv.f32()[ka * Nkv * D + i], dvr[i]);
    }
    qa += r.queries;
    ka += r.keys;
  }
  rows[2].keys = 8;  // rows that describe more keys than k holds
  EXPECT_NE(test::error_of([&] { ops::attention(q, k, v, rows); }).find("rows describe"), std::string::npos);
}

TEST(Ops, MiddleSliceAndItsBackwardAddressTheRightElements) {
  const Tensor x = random_tensor({3, 4, 5}, 16);
  const Tensor s = ops::middle_slice(x, 2);
  ASSERT_EQ(s.shape(), (Shape{3, 5}));
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 5; ++b) EXPECT_EQ(s.f32()[a * 5 + b], x.f32()[(a * 4 + 2) * 5 + b]);
  Tensor acc(DType::f32, {3, 4, 5});
  ops::middle_slice_add_(acc, 2, s);
  ops::middle_slice_add_(acc, 2, s);
  for (int a = 0; a < 3; ++a)
    for (int m = 0; m < 4; ++m)
      for (int b = 0; b < 5; ++b)
        EXPECT_EQ(acc.f32()[(a * 4 + m) * 5 + b], m == 2 ? 2 * s.f32()[a * 5 + b] : 0.0f);
  EXPECT_NE(test::error_of([&] { ops::middle_slice(x, 4); }), "");
}

TEST(Ops, LossOverTensorsChecksTheLabelCount) {
  const Tensor logits = random_tensor({2, 3, 5}, 17);
  const std::vector<std::int64_t> labels{1, 2, 3, -100, 4, 0};
  const LossResult r = ops::causal_lm_loss(logits, labels);
  EXPECT_EQ(r.num_tokens, 4);  // positions 0 and 1 of each row predict a counted label (labels shift left)
  EXPECT_TRUE(std::isfinite(r.loss_sum) && r.loss_sum > 0);
  const std::vector<std::int64_t> short_labels{1, 2};
  EXPECT_NE(test::error_of([&] { ops::causal_lm_loss(logits, short_labels); }), "");
}

// token_loss (the chunked head's loss) against a float64 loop, and the causal loss equals token_loss over the
// shifted targets; its backward is (softmax - onehot) / normaliser.
TEST(Ops, TokenLossMatchesFloat64AndTheCausalLossOverShiftedTargets) {
  const Tensor logits = random_tensor({6, 5}, 23, 2.0f);
  const std::vector<std::int64_t> targets{1, -100, 4, 0, 2, -100};
  const LossResult r = ops::token_loss(logits, targets);
  double want = 0;
  for (std::int64_t p = 0; p < 6; ++p) {
    if (targets[p] < 0) continue;
    double denom = 0;
    for (int j = 0; j < 5; ++j) denom += std::exp(static_cast<double>(logits.f32()[p * 5 + j]));
    want += std::log(denom) - logits.f32()[p * 5 + targets[p]];
  }
  EXPECT_EQ(r.num_tokens, 4);
  EXPECT_NEAR(r.loss_sum, want, 1e-12 * std::abs(want));
  // The same logits as [2, 3, 5] with labels whose left shift gives `targets`.
  const std::vector<std::int64_t> labels{9, 1, -100, 9, 0, 2};
  const std::vector<std::int64_t> shifted{1, -100, -100, 0, 2, -100};
  EXPECT_NEAR(ops::token_loss(logits, shifted).loss_sum,
              ops::causal_lm_loss(logits.reshaped({2, 3, 5}), labels).loss_sum, 1e-12);
  const Tensor d = ops::token_loss_backward(logits, targets, 4.0);
  for (std::int64_t p = 0; p < 6; ++p) {
    double denom = 0;
    for (int j = 0; j < 5; ++j) denom += std::exp(static_cast<double>(logits.f32()[p * 5 + j]));
    for (int j = 0; j < 5; ++j) {
      const double soft = std::exp(static_cast<double>(logits.f32()[p * 5 + j])) / denom;
      const double grad = targets[p] < 0 ? 0.0 : (soft - (j == targets[p] ? 1.0 : 0.0)) / 4.0;
      EXPECT_NEAR(d.f32()[p * 5 + j], grad, 1e-7) << p << " " << j;
    }
  }
  const std::vector<std::int64_t> short_targets{1, 2};
  EXPECT_NE(test::error_of([&] { ops::token_loss(logits, short_targets); }), "");
}

// Conversions and zeroing: f32 -> bf16 rounds to nearest even (the CPU converts, it does not compute in
// bf16).
TEST(Ops, ConversionsRoundToNearestEvenAndZeroClearsNaN) {
  const Tensor x = Tensor::from_floats({4}, {1.0f, 1.00390625f, 1.01171875f, -3.3f});
  const Tensor narrow = ops::to_dtype(x, DType::bf16);
  ASSERT_EQ(narrow.dtype(), DType::bf16);
  const Tensor back = ops::to_dtype(narrow, DType::f32);
  for (std::int64_t i = 0; i < 4; ++i) EXPECT_EQ(back.f32()[i], round_to_bf16(x.f32()[i])) << i;
  EXPECT_EQ(back.f32()[1], 1.0f) << "a tie rounds to the even neighbour";
  Tensor into = Tensor::from_floats({4}, {0, 0, 0, 0});
  ops::assign_(into, narrow);
  for (std::int64_t i = 0; i < 4; ++i) EXPECT_EQ(into.f32()[i], back.f32()[i]);
  Tensor nan = Tensor::from_floats({3}, {NAN, INFINITY, 2.0f});
  ops::zero_(nan);
  for (std::int64_t i = 0; i < 3; ++i) EXPECT_EQ(nan.f32()[i], 0.0f);
  EXPECT_NE(test::error_of([&] {
              ops::linear(narrow.reshaped({1, 4}), narrow.reshaped({1, 4}));
            }),
            "")
      << "the CPU has no bf16 GEMM: a one-line error, not a wrong result";
  Tensor wrong = Tensor::from_floats({3}, {0, 0, 0});
  EXPECT_NE(test::error_of([&] { ops::assign_(wrong, narrow); }), "") << "numel differs";
}

TEST(Ops, RowViewsShareTheBufferAndCheckTheirBounds) {
  Tensor t = Tensor::from_floats({4, 2}, {0, 1, 2, 3, 4, 5, 6, 7});
  Tensor middle = t.rows(1, 2);
  EXPECT_EQ(middle.shape(), (Shape{2, 2}));
  EXPECT_EQ(middle.f32()[0], 2.0f);
  ops::scale_(middle, 10.0f);
  EXPECT_EQ(t.f32()[2], 20.0f);
  EXPECT_EQ(t.f32()[5], 50.0f);
  EXPECT_EQ(t.f32()[6], 6.0f) << "rows outside the view are untouched";
  EXPECT_EQ(t.rows(4, 0).numel(), 0);
  EXPECT_NE(test::error_of([&] { t.rows(3, 2); }), "");
  EXPECT_NE(test::error_of([&] { t.rows(-1, 1); }), "");
}

TEST(Ops, AdamWMatchesTorchsFormulaAndShardsEqualTheWhole) {
  const std::int64_t n = 11;
  const AdamWHyper hyper{0.9, 0.95, 1e-8, 0.1};
  Tensor w = random_tensor({n}, 20), g = random_tensor({n}, 21);
  Tensor m(DType::f32, {n}), v(DType::f32, {n});
  const Tensor w0 = w.clone();
  for (int step = 1; step <= 3; ++step) ops::adamw_(w, g, m, v, adamw_step_constants(hyper, step, 1e-2));
  // torch.optim.AdamW, written out in float64 (the gradient is the same at every step).
  for (std::int64_t i = 0; i < n; ++i) {
    double p = w0.f32()[i], mi = 0, vi = 0;
    const double gi = g.f32()[i];
    for (int t = 1; t <= 3; ++t) {
      p *= 1 - 1e-2 * 0.1;
      mi = 0.9 * mi + 0.1 * gi;
      vi = 0.95 * vi + 0.05 * gi * gi;
      p -= 1e-2 / (1 - std::pow(0.9, t)) * mi / (std::sqrt(vi) / std::sqrt(1 - std::pow(0.95, t)) + 1e-8);
    }
    EXPECT_NEAR(w.f32()[i], p, 1e-6 * std::max(1.0, std::abs(p))) << i;
  }
  // Two shards (ZeRO-1's split) give the whole step's bits.
  Tensor whole = w0.clone(), halves = w0.clone();
  Tensor mw(DType::f32, {n}), vw(DType::f32, {n}), m1(DType::f32, {5}), v1(DType::f32, {5}),
      m2(DType::f32, {6}), v2(DType::f32, {6});
  const AdamWStepConstants k = adamw_step_constants(hyper, 1, 1e-2);
  ops::adamw_(whole, g, mw, vw, k);
  ops::adamw_(halves, g, m1, v1, k, 0);
  ops::adamw_(halves, g, m2, v2, k, 5);
  for (std::int64_t i = 0; i < n; ++i) EXPECT_EQ(whole.f32()[i], halves.f32()[i]) << i;
  EXPECT_NE(test::error_of([&] { ops::adamw_(halves, g, m2, v2, k, 6); }), "");  // past the end
  double squares = 0;
  for (std::int64_t i = 5; i < n; ++i) squares += static_cast<double>(g.f32()[i]) * g.f32()[i];
  EXPECT_EQ(ops::sum_of_squares(g, 5), squares);
  EXPECT_NE(test::error_of([&] { ops::sum_of_squares(g, 3, 9); }), "");
}

// clamp_ and its backward as torch.clamp: values outside [lo, hi] move to the bound, the gradient passes on
// the closed interval (the bounds themselves included) and nowhere else; infinite bounds change nothing.
TEST(Ops, ClampAndItsGradientFollowTorch) {
  Tensor x = Tensor::from_floats({6}, {-2.0f, -0.5f, 0.1f, 0.75f, 3.0f, -0.25f});
  const Tensor before = x.clone();
  ops::clamp_(x, -0.5f, 0.75f);
  const std::vector<float> clamped(x.f32(), x.f32() + 6);
  EXPECT_EQ(clamped, (std::vector<float>{-0.5f, -0.5f, 0.1f, 0.75f, 0.75f, -0.25f}));
  Tensor dy = Tensor::from_floats({6}, {1, 2, 3, 4, 5, 6});
  ops::clamp_backward_(dy, before, -0.5f, 0.75f);
  EXPECT_EQ(std::vector<float>(dy.f32(), dy.f32() + 6), (std::vector<float>{0, 2, 3, 4, 0, 6}));
  Tensor same = before.clone();
  ops::clamp_(same, -INFINITY, INFINITY);
  EXPECT_EQ(std::vector<float>(same.f32(), same.f32() + 6),
            std::vector<float>(before.f32(), before.f32() + 6));
}

}  // namespace
}  // namespace g4
