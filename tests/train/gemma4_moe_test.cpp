// The Gemma 4 MoE block's routed part: the router reads the raw residual, the native path (per_expert_scale
// folded into down_projs) reproduces HF's (weights × per_expert_scale[idx]) on a committed fixture's weights,
// loop ≡ grouped through the whole block, and the block's backward against finite differences.
#include "moe/gemma4_moe.h"

#include <gtest/gtest.h>

#include <cmath>

#include "io/checkpoint.h"
#include "io/config.h"
#include "moe/state_dict_adapter.h"
#include "ops/moe_test_util.h"
#include "test_paths.h"

namespace g4 {
namespace {

using test::numeric_gradient;
using test::random_vector;
using test::tolerance_ratio;

// x1 → pre_feedforward_layernorm_2(x1) with a non-uniform weight, the experts' input.
std::vector<double> rms_norm(const std::vector<double>& x, const std::vector<double>& w, std::int64_t H) {
  std::vector<double> y(x.size());
  for (std::size_t t = 0; t < x.size() / H; ++t) {
    double ms = 0;
    for (std::int64_t j = 0; j < H; ++j) ms += x[t * H + j] * x[t * H + j];
    const double inv = 1 / std::sqrt(ms / H + 1e-6);
    for (std::int64_t j = 0; j < H; ++j) y[t * H + j] = x[t * H + j] * inv * w[j];
  }
  return y;
}

TEST(Gemma4Moe, TheRouterReadsTheRawResidualNotTheExpertsNormedInput) {
  const std::int64_t T = 6, H = 8, E = 6, K = 2, I = 4;
  Gemma4MoeConfig cfg;
  cfg.gate = {H, E, K, 1e-6};
  cfg.experts.hidden = H, cfg.experts.inter = I, cfg.experts.num_experts = E, cfg.experts.n_local = E;
  const auto x1 = random_vector<double>(T * H, 1, -2, 2);
  const auto norm_w = random_vector<double>(H, 2, 0.1, 3.0);
  const auto xe = rms_norm(x1, norm_w, H);
  const auto proj = random_vector<double>(E * H, 3, -3, 3);
  const std::vector<double> scale(H, 1.0);
  const auto gu = random_vector<double>(E * H * 2 * I, 4);
  const auto dn = random_vector<double>(E * I * H, 5);
  Gemma4MoeContext<double> ctx;
  std::vector<double> y(T * H);
  gemma4_moe_forward<double>(cfg, {proj.data(), scale.data(), gu.data(), dn.data()}, x1.data(), xe.data(),
                             nullptr, T, y.data(), &ctx);
  std::vector<double> w_raw(T * K), w_normed(T * K);
  std::vector<std::int64_t> i_raw(T * K), i_normed(T * K);
  moe_gate_forward<double>(cfg.gate, x1.data(), proj.data(), scale.data(), T, w_raw.data(), i_raw.data(),
                           nullptr);
  moe_gate_forward<double>(cfg.gate, xe.data(), proj.data(), scale.data(), T, w_normed.data(),
                           i_normed.data(), nullptr);
  EXPECT_EQ(ctx.indices, i_raw);
  EXPECT_EQ(ctx.weights, w_raw);
  EXPECT_GT(tolerance_ratio(w_normed, w_raw, 1e-9, 0), 1.0) << "the inputs do not tell the two apart";
}

TEST(Gemma4Moe, NativeFoldedWeightsReproduceHfPerExpertScaleOnTheMoe26bFixture) {
  const std::string dir = test::source_path("tests/fixtures/moe_26b");
  const ModelConfig mc = load_config(dir);
  const Checkpoint ckpt = Checkpoint::open(dir);
  const std::string P = mc.text_prefix + "layers.1";
  StateDict hf;
  for (const char* n : {".router.proj.weight", ".router.scale", ".router.per_expert_scale",
                        ".experts.gate_up_proj", ".experts.down_proj"})
    hf[P + n] = ckpt.read_f32(P + n);
  AdapterOptions quiet;
  quiet.log = [](const std::string&) {};
  const StateDict native = gemma4_moe_from_hf(hf, quiet);
  const Gemma4MoeConfig cfg =
      gemma4_moe_config(mc.text.hidden_size, mc.text.num_experts, mc.text.top_k_experts,
                        mc.text.moe_intermediate_size, mc.text.rms_norm_eps);
  const std::int64_t H = cfg.gate.hidden, E = cfg.gate.num_experts, K = cfg.gate.top_k, I = cfg.experts.inter,
                     T = 9;
  const auto x1 = random_vector<float>(T * H, 7, -2, 2);
  const auto xe = random_vector<float>(T * H, 8, -2, 2);
  Gemma4MoeContext<float> ctx;
  std::vector<float> y(T * H);
  gemma4_moe_forward<float>(
      cfg,
      {native.at(P + ".moe.gate.proj.weight").f32(), native.at(P + ".moe.gate.scale").f32(),
       native.at(P + ".moe.experts.gate_and_up_projs").f32(), native.at(P + ".moe.experts.down_projs").f32()},
      x1.data(), xe.data(), nullptr, T, y.data(), &ctx);
  // HF (§3.5), in double: w·per_expert_scale[idx], experts [E,2I,H]/[E,H,I], weight applied after the down
  // proj.
  std::vector<float> w(T * K);
  std::vector<std::int64_t> idx(T * K);
  moe_gate_forward<float>(cfg.gate, x1.data(), hf.at(P + ".router.proj.weight").f32(),
                          hf.at(P + ".router.scale").f32(), T, w.data(), idx.data(), nullptr);
  apply_per_expert_scale(hf.at(P + ".router.per_expert_scale").f32(), idx.data(), T, K, w.data());
  const float* gup = hf.at(P + ".experts.gate_up_proj").f32();
  const float* dnp = hf.at(P + ".experts.down_proj").f32();
  std::vector<double> ref(T * H, 0.0), got(y.begin(), y.end());
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t k = 0; k < K; ++k) {
      const std::int64_t e = idx[t * K + k];
      std::vector<double> a(I);
      for (std::int64_t i = 0; i < I; ++i) {
        double g = 0, u = 0;
        for (std::int64_t h = 0; h < H; ++h) {
          g += double(xe[t * H + h]) * gup[(e * 2 * I + i) * H + h];
          u += double(xe[t * H + h]) * gup[(e * 2 * I + I + i) * H + h];
        }
        a[i] = 0.5 * g * (1 + std::tanh(0.7978845608028654 * (g + 0.044715 * g * g * g))) * u;
      }
      for (std::int64_t h = 0; h < H; ++h) {
        double o = 0;
        for (std::int64_t i = 0; i < I; ++i) o += a[i] * dnp[(e * H + h) * I + i];
        ref[t * H + h] += double(w[t * K + k]) * o;
      }
    }
  EXPECT_EQ(E, 8);
  EXPECT_LE(tolerance_ratio(got, ref, 1e-6, 1e-5), 1.0);
}

TEST(Gemma4Moe, BlockBackwardMatchesFiniteDifferencesAndBackendsAgree) {
  const std::int64_t T = 5, H = 6, E = 4, K = 2, I = 3;
  Gemma4MoeConfig cfg;
  cfg.gate = {H, E, K, 1e-6};
  cfg.experts.hidden = H, cfg.experts.inter = I, cfg.experts.num_experts = E, cfg.experts.n_local = E;
  auto x1 = random_vector<double>(T * H, 11, -2, 2);
  auto xe = random_vector<double>(T * H, 12, -2, 2);
  auto proj = random_vector<double>(E * H, 13, -3, 3);
  auto scale = random_vector<double>(H, 14, 0.5, 1.5);
  auto gu = random_vector<double>(E * H * 2 * I, 15);
  auto dn = random_vector<double>(E * I * H, 16);
  const auto dy = random_vector<double>(T * H, 17);
  const std::uint8_t mask[T] = {1, 1, 0, 1, 1};
  for (ExpertsBackend b : {ExpertsBackend::loop, ExpertsBackend::grouped}) {
    cfg.experts.backend = b;
    Gemma4MoeContext<double> ctx;
    std::vector<double> y(T * H);
    auto W = [&] { return Gemma4MoeWeights<double>{proj.data(), scale.data(), gu.data(), dn.data()}; };
    gemma4_moe_forward<double>(cfg, W(), x1.data(), xe.data(), mask, T, y.data(), &ctx);
    const auto idx0 = ctx.indices;
    std::vector<double> dx1(T * H), dxe(T * H), dproj(E * H, 0.0), dscale(H, 0.0), dgu(gu.size(), 0.0),
        ddn(dn.size(), 0.0);
    gemma4_moe_backward<double>(cfg, W(), xe.data(), ctx, dy.data(), dx1.data(), dxe.data(),
                                {dproj.data(), dscale.data(), dgu.data(), ddn.data()});
    auto loss = [&] {
      Gemma4MoeContext<double> c2;
      std::vector<double> y2(T * H);
      gemma4_moe_forward<double>(cfg, W(), x1.data(), xe.data(), mask, T, y2.data(), &c2);
      EXPECT_EQ(c2.indices, idx0);
      return test::dot(y2, dy);
    };
    EXPECT_LE(tolerance_ratio(dx1, numeric_gradient(x1, loss), 1e-8, 1e-5), 1.0);
    EXPECT_LE(tolerance_ratio(dxe, numeric_gradient(xe, loss), 1e-8, 1e-5), 1.0);
    EXPECT_LE(tolerance_ratio(dproj, numeric_gradient(proj, loss), 1e-8, 1e-5), 1.0);
    EXPECT_LE(tolerance_ratio(dscale, numeric_gradient(scale, loss), 1e-8, 1e-5), 1.0);
    EXPECT_LE(tolerance_ratio(dgu, numeric_gradient(gu, loss), 1e-8, 1e-5), 1.0);
    EXPECT_LE(tolerance_ratio(ddn, numeric_gradient(dn, loss), 1e-8, 1e-5), 1.0);
    for (std::int64_t h = 0; h < H; ++h) EXPECT_EQ(y[2 * H + h], 0.0);  // the masked token
  }
}

}  // namespace
}  // namespace g4
