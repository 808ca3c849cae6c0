// The CPU MoE block (router + grouped experts, fp32) against transformers 5.17.0's Gemma4TextRouter and
// Gemma4TextExperts on the committed block fixture (tests/fixtures/moe_block, float64 reference): routing,
// output, and every gradient of sum(y · dy), mapped back to transformers' parametrisation by the adapter's
// chain rule. Bar: 1e-5 relative (fp32 arithmetic on bf16-exact inputs; measured errors are ~1e-7).
#include <gtest/gtest.h>

#include "moe/gemma4_moe.h"
#include "test_paths.h"
#include "train/moe_block_fixture.h"

namespace g4 {
namespace {

constexpr double kTolerance = 1e-5;

class MoeBlockFixtureCpu : public ::testing::TestWithParam<ExpertsBackend> {};

TEST_P(MoeBlockFixtureCpu, RoutingOutputAndGradientsMatchTransformers) {
  const auto f = test::load_moe_block_fixture(test::source_path("tests/fixtures/moe_block"));
  const std::int64_t T = f.tokens, H = f.hidden, K = f.top_k;
  const Gemma4MoeConfig cfg = f.config(GetParam());
  Gemma4MoeWeights<float> w{f.native_weight("gate.proj.weight").f32(), f.native_weight("gate.scale").f32(),
                            f.native_weight("experts.gate_and_up_projs").f32(),
                            f.native_weight("experts.down_projs").f32()};
  const Tensor& router_input = f.want("router_input");
  const Tensor& expert_input = f.want("expert_input");
  std::vector<float> y(T * H);
  Gemma4MoeContext<float> ctx;
  gemma4_moe_forward(cfg, w, router_input.f32(), expert_input.f32(), nullptr, T, y.data(), &ctx);

  // Routing: the same experts for every token; HF's weights carry per_expert_scale, which the native layout
  // folds into down_projs.
  std::vector<float> scaled;
  ASSERT_TRUE(test::same_experts_per_token(ctx.indices.data(), ctx.weights.data(), f.want("f64.indices"),
                                           f.hf_weight("router.per_expert_scale").f32(), T, K, &scaled));
  EXPECT_LE(test::relative_error(scaled, f.want("f64.weights")), kTolerance);
  EXPECT_LE(test::relative_error(y, f.want("f64.y")), kTolerance);

  // Backward of sum(y · dy).
  const Tensor& dy = f.want("dy");
  std::vector<float> d_router(T * H), d_expert(T * H);
  StateDict grads;
  for (const auto& [name, t] : f.native) grads[name] = Tensor::zeros(t.shape());
  auto g = [&](const char* n) { return grads.at(std::string("model.layers.0.moe.") + n).f32(); };
  Gemma4MoeGrads<float> gw{g("gate.proj.weight"), g("gate.scale"), g("experts.gate_and_up_projs"),
                           g("experts.down_projs")};
  gemma4_moe_backward(cfg, w, expert_input.f32(), ctx, dy.f32(), d_router.data(), d_expert.data(), gw);
  EXPECT_LE(test::relative_error(d_router, f.want("f64.grad.router_input")), kTolerance);
  EXPECT_LE(test::relative_error(d_expert, f.want("f64.grad.expert_input")), kTolerance);

  const StateDict hf_grads = gemma4_moe_grads_to_hf(grads, f.hf);
  for (const char* name : {"router.proj.weight", "router.scale", "router.per_expert_scale",
                           "experts.gate_up_proj", "experts.down_proj"}) {
    const Tensor& got = hf_grads.at(std::string("model.layers.0.") + name);
    EXPECT_LE(test::relative_error(got, f.want(std::string("f64.grad.") + name)), kTolerance) << name;
  }
  // The empty expert's weights get exactly zero gradient.
  const Tensor& dd = hf_grads.at("model.layers.0.experts.down_proj");
  const std::int64_t per_expert = dd.numel() / f.experts;
  for (std::int64_t i = 0; i < per_expert; ++i) ASSERT_EQ(dd.f32()[f.empty_expert * per_expert + i], 0.0f);
}

INSTANTIATE_TEST_SUITE_P(Backends, MoeBlockFixtureCpu,
                         ::testing::Values(ExpertsBackend::loop, ExpertsBackend::grouped),
                         [](const auto& info) {
                           return info.param == ExpertsBackend::loop ? "loop" : "grouped";
                         });

}  // namespace
}  // namespace g4
