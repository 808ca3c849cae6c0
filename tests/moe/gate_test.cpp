// The generic Gate (score functions, top-k modes, normalisation, expert bias, aux loss) and the aux-loss
// autoscaler (the note's §6.7, §10.1).
#include "moe/gate.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "moe/aux_loss_autoscaler.h"
#include "ops/moe_test_util.h"

namespace g4 {
namespace {

using test::numeric_gradient;
using test::random_vector;
using test::tolerance_ratio;

GateConfig cfg(ScoreFunction s, bool before, bool norm, double route_scale = 1.0, double aux = 0.0) {
  GateConfig c;
  c.dim = 6, c.num_experts = 5, c.top_k = 2, c.score = s, c.softmax_before_topk = before,
  c.norm_topk_prob = norm;
  c.route_scale = route_scale, c.aux_loss_coeff = aux;
  return c;
}

// With an identity-like weight the logits are known: x row t = logits row t (dim = E).
TEST(Gate, SoftmaxAfterTopKIsTheSoftmaxOverTheChosenLogits) {
  GateConfig c = cfg(ScoreFunction::softmax, false, false);
  c.dim = 5;
  std::vector<double> eye(25, 0.0);
  for (int i = 0; i < 5; ++i) eye[i * 5 + i] = 1.0;
  const double x[5] = {0.1, 2.0, -1.0, 1.5, 0.3};
  double w[2];
  std::int64_t idx[2];
  gate_forward<double>(c, x, eye.data(), nullptr, nullptr, nullptr, 1, w, idx, nullptr, nullptr);
  EXPECT_EQ(idx[0], 1);
  EXPECT_EQ(idx[1], 3);
  const double z = std::exp(2.0) + std::exp(1.5);
  EXPECT_NEAR(w[0], std::exp(2.0) / z, 1e-15);
  EXPECT_NEAR(w[1], std::exp(1.5) / z, 1e-15);
}

TEST(Gate, SoftmaxBeforeTopKGathersFullSoftmaxAndNormTopKMakesThemSumToOneTimesRouteScale) {
  GateConfig c = cfg(ScoreFunction::softmax, true, false);
  c.dim = 5;
  std::vector<double> eye(25, 0.0);
  for (int i = 0; i < 5; ++i) eye[i * 5 + i] = 1.0;
  const double x[5] = {0.1, 2.0, -1.0, 1.5, 0.3};
  double z = 0;
  for (double v : x) z += std::exp(v);
  double w[2];
  std::int64_t idx[2];
  gate_forward<double>(c, x, eye.data(), nullptr, nullptr, nullptr, 1, w, idx, nullptr, nullptr);
  EXPECT_NEAR(w[0], std::exp(2.0) / z, 1e-15);
  EXPECT_NEAR(w[1], std::exp(1.5) / z, 1e-15);
  c.norm_topk_prob = true;
  c.route_scale = 2.5;
  gate_forward<double>(c, x, eye.data(), nullptr, nullptr, nullptr, 1, w, idx, nullptr, nullptr);
  EXPECT_NEAR(w[0] + w[1], 2.5, 1e-12);
}

TEST(Gate, SigmoidScoresAreGatheredAtTheChosenExperts) {
  GateConfig c = cfg(ScoreFunction::sigmoid, false, false);
  c.dim = 5;
  std::vector<double> eye(25, 0.0);
  for (int i = 0; i < 5; ++i) eye[i * 5 + i] = 1.0;
  const double x[5] = {0.1, 2.0, -1.0, 1.5, 0.3};
  double w[2];
  std::int64_t idx[2];
  gate_forward<double>(c, x, eye.data(), nullptr, nullptr, nullptr, 1, w, idx, nullptr, nullptr);
  EXPECT_NEAR(w[0], 1 / (1 + std::exp(-2.0)), 1e-15);
  EXPECT_NEAR(w[1], 1 / (1 + std::exp(-1.5)), 1e-15);
}

TEST(Gate, ExpertBiasChangesTheChoiceButNotTheWeights) {
  GateConfig c = cfg(ScoreFunction::sigmoid, false, false);
  c.dim = 5;
  std::vector<double> eye(25, 0.0);
  for (int i = 0; i < 5; ++i) eye[i * 5 + i] = 1.0;
  const double x[5] = {0.1, 2.0, -1.0, 1.5, 0.3};
  const double bias[5] = {0, 0, 10.0, 0, 0};  // forces expert 2 in
  double w[2];
  std::int64_t idx[2];
  gate_forward<double>(c, x, eye.data(), nullptr, bias, nullptr, 1, w, idx, nullptr, nullptr);
  EXPECT_EQ(idx[0], 2);
  EXPECT_EQ(idx[1], 1);
  EXPECT_NEAR(w[0], 1 / (1 + std::exp(1.0)), 1e-15);  // σ(−1), the bias not added
}

TEST(Gate, AuxLossCountsOnlyValidTokensAndMatchesAHandComputation) {
  GateConfig c = cfg(ScoreFunction::softmax, true, true, 1.0, 0.01);
  c.dim = 5;
  c.top_k = 1;
  std::vector<double> eye(25, 0.0);
  for (int i = 0; i < 5; ++i) eye[i * 5 + i] = 1.0;
  // Token 0 → expert 0, token 1 (masked) → expert 4, token 2 → expert 0.
  const double x[15] = {3, 0, 0, 0, 0, 0, 0, 0, 0, 9, 2, 1, 0, 0, 0};
  const std::uint8_t mask[3] = {1, 0, 1};
  double w[3], aux = -1;
  std::int64_t idx[3];
  gate_forward<double>(c, x, eye.data(), nullptr, nullptr, mask, 3, w, idx, &aux, nullptr);
  auto sm = [&](int t, int e) {
    double z = 0;
    for (int j = 0; j < 5; ++j) z += std::exp(x[t * 5 + j]);
    return std::exp(x[t * 5 + e]) / z;
  };
  // f_0 = 2·5/(1·2) = 5, others 0; P_0 = (s[0,0] + s[2,0]) / 2.
  EXPECT_NEAR(aux, 5.0 * (sm(0, 0) + sm(2, 0)) / 2.0, 1e-14);
  EXPECT_GT(aux, 0.0);
}

TEST(Gate, BackwardMatchesFiniteDifferencesInEveryModeWithAndWithoutAuxLoss) {
  struct Mode {
    ScoreFunction s;
    bool before, norm;
    double aux;
  };
  for (const Mode m :
       {Mode{ScoreFunction::softmax, false, false, 0.0}, Mode{ScoreFunction::softmax, true, true, 0.0},
        Mode{ScoreFunction::sigmoid, false, true, 0.0}, Mode{ScoreFunction::softmax, true, false, 0.3},
        Mode{ScoreFunction::softmax, false, true, 0.3}, Mode{ScoreFunction::sigmoid, false, false, 0.3}}) {
    SCOPED_TRACE(testing::Message() << int(m.s) << m.before << m.norm << m.aux);
    const GateConfig c = cfg(m.s, m.before, m.norm, 1.7, m.aux);
    const std::int64_t T = 4;
    auto x = random_vector<double>(T * 6, 3, -2, 2);
    auto weight = random_vector<double>(5 * 6, 4, -2, 2);
    auto bias = random_vector<double>(5, 5, -0.5, 0.5);
    const auto ebias = random_vector<double>(5, 6, -0.1, 0.1);
    const auto g = random_vector<double>(T * 2, 7);
    const std::uint8_t mask[4] = {1, 1, 0, 1};
    const double aux_grad = AuxLossAutoScaler().aux_loss_grad(c.aux_loss_coeff);
    std::vector<double> w(T * 2);
    std::vector<std::int64_t> idx(T * 2), idx0(T * 2);
    GateContext<double> ctx;
    double aux = 0;
    gate_forward<double>(c, x.data(), weight.data(), bias.data(), ebias.data(), mask, T, w.data(),
                         idx0.data(), &aux, &ctx);
    std::vector<double> dx(T * 6), dweight(5 * 6, 0.0), dbias(5, 0.0);
    gate_backward<double>(c, x.data(), weight.data(), ctx, g.data(), aux_grad, dx.data(), dweight.data(),
                          dbias.data());
    auto loss = [&] {
      double a = 0;
      gate_forward<double>(c, x.data(), weight.data(), bias.data(), ebias.data(), mask, T, w.data(),
                           idx.data(), &a, nullptr);
      EXPECT_EQ(idx, idx0);
      return test::dot(w, g) + aux_grad * a;
    };
    EXPECT_LE(tolerance_ratio(dx, numeric_gradient(x, loss), 1e-8, 1e-5), 1.0);
    EXPECT_LE(tolerance_ratio(dweight, numeric_gradient(weight, loss), 1e-8, 1e-5), 1.0);
    EXPECT_LE(tolerance_ratio(dbias, numeric_gradient(bias, loss), 1e-8, 1e-5), 1.0);
  }
}

TEST(AuxLossAutoScaler, ForwardIsTheIdentityAndTheAuxGradientIsCoeffTimesTheMainLossScale) {
  AuxLossAutoScaler s;
  const std::vector<float> out = {1.0f, 2.0f};
  EXPECT_EQ(&s.forward(out), &out);
  EXPECT_EQ(s.main_loss_backward_scale(), 1.0);
  EXPECT_EQ(s.aux_loss_grad(1.0), 1.0);
  s.set_main_loss_backward_scale(0.25);
  EXPECT_EQ(s.aux_loss_grad(0.01), 0.01 * 0.25);
}

TEST(Gate, BiasUpdateRaisesUnderloadedAndLowersOverloadedExpertsOverValidTokensOnly) {
  const std::int64_t idx[8] = {0, 1, 0, 2, 0, 1, 3, 3};  // token 3 (masked) would load expert 3
  const std::uint8_t mask[4] = {1, 1, 1, 0};
  const auto load = expert_load(idx, mask, 4, 2, 4);
  EXPECT_EQ(load, (std::vector<double>{3, 2, 1, 0}));
  float bias[4] = {0, 0, 0, 0};
  update_expert_bias(bias, load, 0.01);  // mean load 1.5
  EXPECT_EQ(bias[0], -0.01f);
  EXPECT_EQ(bias[1], -0.01f);
  EXPECT_EQ(bias[2], 0.01f);
  EXPECT_EQ(bias[3], 0.01f);
}

TEST(Gate, UnknownScoreFunctionIsAnError) {
  EXPECT_EQ(score_function_from_name("sigmoid"), ScoreFunction::sigmoid);
  EXPECT_THROW(score_function_from_name("sqrtsoftplus"), Error);
}

}  // namespace
}  // namespace g4
