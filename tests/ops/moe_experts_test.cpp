// GroupedExperts (the note's §4): loop ≡ grouped, a naive reference, backward against finite differences,
// masking, empty experts, and expert-parallel ranges.
#include "ops/cpu/moe_experts.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "core/error.h"
#include "ops/moe_test_util.h"

namespace g4 {
namespace {

using test::numeric_gradient;
using test::random_vector;
using test::tolerance_ratio;

template <class T>
struct Problem {
  std::int64_t T_ = 0, K = 0, H = 0, I = 0, E = 0;
  std::vector<T> x, weights, gate_and_up, down;
  std::vector<std::int64_t> indices;
  std::vector<std::uint8_t> mask;
};

// Routes token t to distinct experts; expert `unused` (if ≥ 0) gets no token.
template <class T>
Problem<T> make_problem(std::int64_t tokens, std::int64_t K, std::int64_t H, std::int64_t I, std::int64_t E,
                        std::uint32_t seed, std::int64_t unused = -1) {
  Problem<T> p;
  p.T_ = tokens, p.K = K, p.H = H, p.I = I, p.E = E;
  p.x = random_vector<T>(tokens * H, seed);
  p.weights = random_vector<T>(tokens * K, seed + 1, 0.1, 1.0);
  p.gate_and_up = random_vector<T>(E * H * 2 * I, seed + 2, -0.5, 0.5);
  p.down = random_vector<T>(E * I * H, seed + 3, -0.5, 0.5);
  p.mask.assign(tokens, 1);
  std::mt19937 gen(seed + 4);
  for (std::int64_t t = 0; t < tokens; ++t) {
    std::vector<std::int64_t> experts;
    for (std::int64_t e = 0; e < E; ++e)
      if (e != unused) experts.push_back(e);
    std::shuffle(experts.begin(), experts.end(), gen);
    p.indices.insert(p.indices.end(), experts.begin(), experts.begin() + K);
  }
  return p;
}

ExpertsConfig config(std::int64_t H, std::int64_t I, std::int64_t E, ExpertsBackend b, std::int64_t start = 0,
                     std::int64_t n_local = -1) {
  ExpertsConfig c;
  c.hidden = H, c.inter = I, c.num_experts = E, c.start = start, c.n_local = n_local < 0 ? E : n_local;
  c.backend = b;
  return c;
}

// HF's form: y[t] = Σ_k w·((gelu(x·Wg)·(x·Wu))·Wd), the weight applied after the down projection, in double.
std::vector<double> hf_reference(const Problem<double>& p) {
  std::vector<double> y(p.T_ * p.H, 0.0);
  for (std::int64_t t = 0; t < p.T_; ++t) {
    if (!p.mask[t]) continue;
    for (std::int64_t k = 0; k < p.K; ++k) {
      const std::int64_t e = p.indices[t * p.K + k];
      std::vector<double> a(p.I);
      for (std::int64_t i = 0; i < p.I; ++i) {
        double g = 0, u = 0;
        for (std::int64_t h = 0; h < p.H; ++h) {
          g += p.x[t * p.H + h] * p.gate_and_up[(e * p.H + h) * 2 * p.I + i];
          u += p.x[t * p.H + h] * p.gate_and_up[(e * p.H + h) * 2 * p.I + p.I + i];
        }
        a[i] = 0.5 * g * (1 + std::tanh(0.7978845608028654 * (g + 0.044715 * g * g * g))) * u;
      }
      for (std::int64_t h = 0; h < p.H; ++h) {
        double o = 0;
        for (std::int64_t i = 0; i < p.I; ++i) o += a[i] * p.down[(e * p.I + i) * p.H + h];
        y[t * p.H + h] += p.weights[t * p.K + k] * o;
      }
    }
  }
  return y;
}

template <class T>
std::vector<T> forward(const Problem<T>& p, const ExpertsConfig& c, ExpertsContext<T>* ctx) {
  std::vector<T> y(p.T_ * p.H);
  const std::int64_t off_gu = c.start * p.H * 2 * p.I, off_d = c.start * p.I * p.H;
  moe_experts_forward<T>(c, p.x.data(), p.mask.data(), p.weights.data(), p.indices.data(), p.T_, p.K,
                         p.gate_and_up.data() + off_gu, p.down.data() + off_d, y.data(), ctx);
  return y;
}

struct Grads {
  std::vector<double> dx, dw, dgu, dd;
};

template <class T>
Grads backward(const Problem<T>& p, const ExpertsConfig& c, ExpertsContext<T>& ctx,
               const std::vector<T>& dy) {
  std::vector<T> dx(p.T_ * p.H), dw(p.T_ * p.K), dgu(c.n_local * p.H * 2 * p.I, T(0)),
      dd(c.n_local * p.I * p.H, T(0));
  moe_experts_backward<T>(c, p.x.data(), p.gate_and_up.data() + c.start * p.H * 2 * p.I,
                          p.down.data() + c.start * p.I * p.H, ctx, dy.data(), dx.data(), dw.data(),
                          dgu.data(), dd.data());
  return {{dx.begin(), dx.end()}, {dw.begin(), dw.end()}, {dgu.begin(), dgu.end()}, {dd.begin(), dd.end()}};
}

TEST(GroupedExperts, BothBackendsMatchTheHfFormWithTheWeightAfterTheDownProjection) {
  const auto p = make_problem<double>(9, 2, 6, 5, 4, 30);
  const auto ref = hf_reference(p);
  for (ExpertsBackend b : {ExpertsBackend::loop, ExpertsBackend::grouped}) {
    ExpertsContext<double> ctx;
    EXPECT_LE(tolerance_ratio(forward(p, config(6, 5, 4, b), &ctx), ref, 1e-14, 1e-12), 1.0);
  }
}

TEST(GroupedExperts, LoopAndGroupedAgreeForwardAndBackwardInFp32) {
  const auto p = make_problem<float>(37, 4, 32, 24, 8, 40);
  const auto dy = random_vector<float>(37 * 32, 41);
  ExpertsContext<float> cl, cg;
  const auto yl = forward(p, config(32, 24, 8, ExpertsBackend::loop), &cl);
  const auto yg = forward(p, config(32, 24, 8, ExpertsBackend::grouped), &cg);
  EXPECT_LE(tolerance_ratio({yl.begin(), yl.end()}, {yg.begin(), yg.end()}, 1e-5, 1e-5), 1.0);
  const Grads gl = backward(p, config(32, 24, 8, ExpertsBackend::loop), cl, dy);
  const Grads gg = backward(p, config(32, 24, 8, ExpertsBackend::grouped), cg, dy);
  EXPECT_LE(tolerance_ratio(gl.dx, gg.dx, 1e-5, 1e-5), 1.0);
  EXPECT_LE(tolerance_ratio(gl.dw, gg.dw, 1e-5, 1e-5), 1.0);
  EXPECT_LE(tolerance_ratio(gl.dgu, gg.dgu, 1e-5, 1e-5), 1.0);
  EXPECT_LE(tolerance_ratio(gl.dd, gg.dd, 1e-5, 1e-5), 1.0);
}

TEST(GroupedExperts, BackwardMatchesFiniteDifferencesForInputRoutingWeightsAndBothWeightTensors) {
  for (ExpertsBackend b : {ExpertsBackend::loop, ExpertsBackend::grouped}) {
    SCOPED_TRACE(b == ExpertsBackend::loop ? "loop" : "grouped");
    auto p = make_problem<double>(5, 2, 4, 3, 3, 50);
    p.mask[3] = 0;
    const auto c = config(4, 3, 3, b);
    const auto dy = random_vector<double>(5 * 4, 51);
    ExpertsContext<double> ctx;
    forward(p, c, &ctx);
    const Grads g = backward(p, c, ctx, dy);
    auto loss = [&] {
      ExpertsContext<double> c2;
      return test::dot(forward(p, c, &c2), dy);
    };
    EXPECT_LE(tolerance_ratio(g.dx, numeric_gradient(p.x, loss), 1e-9, 1e-6), 1.0);
    EXPECT_LE(tolerance_ratio(g.dw, numeric_gradient(p.weights, loss), 1e-9, 1e-6), 1.0);
    EXPECT_LE(tolerance_ratio(g.dgu, numeric_gradient(p.gate_and_up, loss), 1e-9, 1e-6), 1.0);
    EXPECT_LE(tolerance_ratio(g.dd, numeric_gradient(p.down, loss), 1e-9, 1e-6), 1.0);
  }
}

TEST(GroupedExperts, MaskedTokensGetExactlyZeroOutputAndZeroGradients) {
  for (ExpertsBackend b : {ExpertsBackend::loop, ExpertsBackend::grouped}) {
    auto p = make_problem<float>(6, 2, 8, 4, 4, 60);
    p.mask = {1, 0, 1, 0, 0, 1};
    ExpertsContext<float> ctx;
    const auto y = forward(p, config(8, 4, 4, b), &ctx);
    const Grads g = backward(p, config(8, 4, 4, b), ctx, random_vector<float>(6 * 8, 61));
    for (std::int64_t t : {1, 3, 4}) {
      for (std::int64_t h = 0; h < 8; ++h) {
        EXPECT_EQ(y[t * 8 + h], 0.0f);
        EXPECT_EQ(g.dx[t * 8 + h], 0.0);
      }
      EXPECT_EQ(g.dw[t * 2], 0.0);
      EXPECT_EQ(g.dw[t * 2 + 1], 0.0);
    }
    for (std::int64_t t : {0, 2, 5}) EXPECT_NE(y[t * 8], 0.0f);
  }
}

TEST(GroupedExperts, AnAllMaskedBatchGivesZerosEverywhereAndZeroGrads) {
  for (ExpertsBackend b : {ExpertsBackend::loop, ExpertsBackend::grouped}) {
    auto p = make_problem<float>(4, 2, 8, 4, 4, 70);
    p.mask.assign(4, 0);
    ExpertsContext<float> ctx;
    const auto y = forward(p, config(8, 4, 4, b), &ctx);
    const Grads g = backward(p, config(8, 4, 4, b), ctx, random_vector<float>(4 * 8, 71));
    for (float v : y) EXPECT_EQ(v, 0.0f);
    for (const auto* v : {&g.dx, &g.dw, &g.dgu, &g.dd})
      for (double d : *v) EXPECT_EQ(d, 0.0);
  }
}

TEST(GroupedExperts, AnExpertWithoutTokensGetsZeroGradientsWhileOthersDoNot) {
  for (ExpertsBackend b : {ExpertsBackend::loop, ExpertsBackend::grouped}) {
    const auto p = make_problem<float>(8, 2, 6, 4, 5, 80, /*unused=*/2);
    ExpertsContext<float> ctx;
    forward(p, config(6, 4, 5, b), &ctx);
    EXPECT_EQ(ctx.perm.tokens_per_expert[2], 0);
    std::int64_t used = 0;
    for (std::int64_t e = 0; e < 5; ++e) used += ctx.perm.tokens_per_expert[e] > 0;
    EXPECT_GE(used, 3);
    const Grads g = backward(p, config(6, 4, 5, b), ctx, random_vector<float>(8 * 6, 81));
    const std::int64_t gu = 6 * 8, dn = 4 * 6;
    for (std::int64_t e = 0; e < 5; ++e) {
      double n_gu = 0, n_d = 0;
      for (std::int64_t i = 0; i < gu; ++i) n_gu += std::abs(g.dgu[e * gu + i]);
      for (std::int64_t i = 0; i < dn; ++i) n_d += std::abs(g.dd[e * dn + i]);
      if (ctx.perm.tokens_per_expert[e] == 0) {
        EXPECT_EQ(n_gu, 0.0);
        EXPECT_EQ(n_d, 0.0);
      } else {
        EXPECT_GT(n_gu, 0.0);
        EXPECT_GT(n_d, 0.0);
      }
    }
  }
}

TEST(GroupedExperts, ExpertParallelRanksSumToTheFullLayerForwardAndBackward) {
  // Three ranks with uneven expert blocks (3, 2, 2 of 7) see every token (all-gather EP, the note's §7.3):
  // the sum of their outputs, input grads and routing-weight grads is the full layer's, and each rank's
  // expert grads are its slice of the full ones.
  const auto p = make_problem<double>(10, 3, 6, 4, 7, 90);
  const auto dy = random_vector<double>(10 * 6, 91);
  ExpertsContext<double> full_ctx;
  const auto full = forward(p, config(6, 4, 7, ExpertsBackend::grouped), &full_ctx);
  const Grads fg = backward(p, config(6, 4, 7, ExpertsBackend::grouped), full_ctx, dy);
  std::vector<double> sum(full.size(), 0.0), dx(fg.dx.size(), 0.0), dw(fg.dw.size(), 0.0);
  for (auto [start, n] : {std::pair<std::int64_t, std::int64_t>{0, 3}, {3, 2}, {5, 2}}) {
    ExpertsContext<double> ctx;
    const auto c = config(6, 4, 7, ExpertsBackend::grouped, start, n);
    const auto part = forward(p, c, &ctx);
    const Grads g = backward(p, c, ctx, dy);
    for (std::size_t i = 0; i < sum.size(); ++i) sum[i] += part[i];
    for (std::size_t i = 0; i < dx.size(); ++i) dx[i] += g.dx[i];
    for (std::size_t i = 0; i < dw.size(); ++i) dw[i] += g.dw[i];
    const std::int64_t gu = 6 * 8, dn = 4 * 6;
    EXPECT_LE(tolerance_ratio(g.dgu, {fg.dgu.begin() + start * gu, fg.dgu.begin() + (start + n) * gu}, 1e-14,
                              1e-12),
              1.0);
    EXPECT_LE(
        tolerance_ratio(g.dd, {fg.dd.begin() + start * dn, fg.dd.begin() + (start + n) * dn}, 1e-14, 1e-12),
        1.0);
  }
  EXPECT_LE(tolerance_ratio(sum, full, 1e-14, 1e-12), 1.0);
  EXPECT_LE(tolerance_ratio(dx, fg.dx, 1e-14, 1e-12), 1.0);
  EXPECT_LE(tolerance_ratio(dw, fg.dw, 1e-14, 1e-12), 1.0);
}

TEST(GroupedExperts, GroupedContextBuffersAreReusedAcrossCalls) {
  const auto p = make_problem<float>(16, 2, 8, 4, 4, 100);
  ExpertsContext<float> ctx;
  forward(p, config(8, 4, 4, ExpertsBackend::grouped), &ctx);
  const float* h = ctx.h.data();
  const float* xs = ctx.x_sorted.data();
  forward(p, config(8, 4, 4, ExpertsBackend::grouped), &ctx);
  EXPECT_EQ(ctx.h.data(), h);
  EXPECT_EQ(ctx.x_sorted.data(), xs);
}

TEST(GroupedExperts, ABatchOfZeroTokensIsValid) {
  for (ExpertsBackend b : {ExpertsBackend::loop, ExpertsBackend::grouped}) {
    const auto gu = random_vector<float>(3 * 4 * 4, 1), dn = random_vector<float>(3 * 2 * 4, 2);
    ExpertsContext<float> ctx;
    moe_experts_forward<float>(config(4, 2, 3, b), nullptr, nullptr, nullptr, nullptr, 0, 2, gu.data(),
                               dn.data(), nullptr, &ctx);
    std::vector<float> dgu(gu.size(), 0.f), ddn(dn.size(), 0.f);
    moe_experts_backward<float>(config(4, 2, 3, b), nullptr, gu.data(), dn.data(), ctx, nullptr, nullptr,
                                nullptr, dgu.data(), ddn.data());
    EXPECT_EQ(ctx.perm.rows(), 0);
    for (float v : dgu) EXPECT_EQ(v, 0.0f);
  }
}

TEST(GroupedExperts, BackendNamesParseAndUnknownIsAnError) {
  EXPECT_EQ(experts_backend_from_name("loop"), ExpertsBackend::loop);
  EXPECT_EQ(experts_backend_from_name("grouped"), ExpertsBackend::grouped);
  EXPECT_THROW(experts_backend_from_name("te"), Error);
}

}  // namespace
}  // namespace g4
