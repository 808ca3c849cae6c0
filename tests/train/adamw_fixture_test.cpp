// AdamW against torch.optim.AdamW on the fixtures: lr 1e-2, betas (0.9, 0.999), eps 1e-8, weight decay 0.1,
// the same batch every step (tools/make_fixtures.py).
//
// 1. The optimizer alone: fed transformers' own gradients, one step reproduces every parameter of every case.
// 2. The training loop (our forward, backward and AdamW): after 1 and 3 steps. AdamW's first steps move each
//    element by about lr·g/(|g| + eps), so an element whose gradient is at the fp32 noise floor (|g| ~ 1e-8
//    while the tensor's RMS is ~1e-2) gets a noise-driven update of up to lr in any implementation that is
//    not float64. Those elements (0 < |g_ref| < 1e-6 = 100·eps, counted and bounded to under 5% of the
//    tensor; the most is 1.9%, in dense_e2b's per-layer embedding table) are left out of the loop comparison;
//    every other element must match, to 1e-5 after one step. After three steps the noise-driven updates of
//    step 1 have moved the network slightly, and steps 2 and 3 amplify the resulting gradient differences the
//    same way in other elements: measured 3.7e-6 (dense_e2b) and 5e-5 (dense_31b), so the three-step bound is
//    1e-4. Test 1 is the optimizer's exactness check (1e-6); this one checks that the loop is wired right.
// MoE: g4moe trains in the native (NeMo) parametrisation, where per_expert_scale is folded into down_projs
// and is no longer a parameter, so the routed experts' trajectory differs from transformers' by design; after
// one step every tensor outside the routed experts must match (step-0 gradients agree in both).
#include <gtest/gtest.h>

#include <cmath>

#include "data/score_input.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "model/gemma4_training.h"
#include "test_paths.h"
#include "train/adamw.h"
#include "train/fixture_cases.h"
#include "train/model_loading.h"
#include "train/parameter_refs.h"

namespace g4 {
namespace {

// Relative Frobenius error over the elements whose reference gradient is above the conditioning floor (all
// elements when `grad_ref` is null). `excluded` receives the number left out.
double relative_error(const Tensor& actual, const Tensor& expected, const Tensor* grad_ref = nullptr,
                      std::int64_t* excluded = nullptr) {
  const double floor = 1e-6;  // 100 × eps: below it AdamW's update lr·g/(|g| + eps) hinges on g's last bits
  double diff = 0, norm = 0;
  std::int64_t skipped = 0;
  for (std::int64_t i = 0; i < expected.numel(); ++i) {
    // Exactly-zero gradients are well conditioned: only the decay moves them.
    if (grad_ref && grad_ref->f64()[i] != 0.0 && std::fabs(grad_ref->f64()[i]) < floor) {
      ++skipped;
      continue;
    }
    const double a = actual.f32()[i], e = expected.f64()[i];
    if (std::isnan(a)) return NAN;
    diff += (a - e) * (a - e);
    norm += e * e;
  }
  if (excluded) *excluded = skipped;
  return std::sqrt(diff / norm);
}

void run_case(const std::string& name, int steps_to_check_max, bool skip_moe) {
  const std::string dir = test::source_path("tests/fixtures/" + name);
  Gemma4Model model = load_gemma4_model(dir);
  const Batch batch = read_score_input(dir + "/input.json", model.config.text.vocab_size);
  const auto expected = SafetensorsFile::open(dir + "/expected.safetensors");
  AdamW adamw(AdamWConfig{0.9, 0.999, 1e-8, 0.1});
  for (int step = 1; step <= steps_to_check_max; ++step) {
    Gemma4Weights grads = zeros_like(model.config, model.weights);
    gemma4_forward_backward(model, batch, grads);
    const std::vector<ParamRef> params = parameter_refs(model.config, model.weights, grads);
    adamw.step(params, 1e-2);
    if (step != 1 && step != 3) continue;
    int compared = 0;
    double worst = 0;
    for (const ParamRef& p : params) {
      if (skip_moe && p.name.find(".moe.") != std::string::npos) continue;
      const TensorInfo* info = expected->find("adamw" + std::to_string(step) + "." + p.name);
      ASSERT_NE(info, nullptr) << p.name;
      const Tensor grad_ref = expected->read(*expected->find("grad." + p.name));
      std::int64_t excluded = 0;
      const double err = relative_error(*p.param, expected->read(*info), &grad_ref, &excluded);
      EXPECT_LE(err, step == 1 ? 1e-5 : 1e-4) << name << " step " << step << ": " << p.name;
      EXPECT_LT(excluded * 20, p.param->numel())
          << name << ": too many ill-conditioned elements in " << p.name;
      worst = std::max(worst, err);
      ++compared;
    }
    EXPECT_GT(compared, 10);
    std::printf("[ case %-16s ] AdamW step %d: %d tensors, worst relative error %.3g\n", name.c_str(), step,
                compared, worst);
  }
}

class AdamWWithReferenceGradients : public ::testing::TestWithParam<std::string> {};

TEST_P(AdamWWithReferenceGradients, OneStepMatchesTorch) {
  const std::string dir = test::source_path("tests/fixtures/" + GetParam());
  const auto expected = SafetensorsFile::open(dir + "/expected.safetensors");
  const Checkpoint ckpt = Checkpoint::open(dir);
  std::vector<Tensor> params, grads;
  std::vector<std::string> names;
  for (const TensorInfo& info : expected->tensors()) {
    if (info.name.rfind("grad.", 0) != 0) continue;
    names.push_back(info.name.substr(5));
    params.push_back(ckpt.read_f32(names.back()));
    grads.push_back(expected->read(info).to_f32());
  }
  std::vector<ParamRef> refs;
  for (std::size_t i = 0; i < names.size(); ++i) refs.push_back({names[i], &params[i], &grads[i]});
  AdamW adamw(AdamWConfig{0.9, 0.999, 1e-8, 0.1});
  adamw.step(refs, 1e-2);
  double worst = 0;
  for (std::size_t i = 0; i < names.size(); ++i) {
    const double err = relative_error(params[i], expected->read(*expected->find("adamw1." + names[i])));
    EXPECT_LE(err, 1e-6) << names[i];
    worst = std::max(worst, err);
  }
  EXPECT_GT(names.size(), 10u);
  std::printf("[ case %-16s ] AdamW alone, %zu tensors, worst relative error %.3g\n", GetParam().c_str(),
              names.size(), worst);
}

INSTANTIATE_TEST_SUITE_P(Cases, AdamWWithReferenceGradients, ::testing::ValuesIn(test::fixture_cases()),
                         [](const auto& info) { return info.param; });

TEST(AdamWParity, DenseE2BAfterOneAndThreeSteps) {
  run_case("dense_e2b", 3, false);
}
TEST(AdamWParity, Dense31BAfterOneAndThreeSteps) {
  run_case("dense_31b", 3, false);
}
TEST(AdamWParity, MoeAfterOneStepOutsideTheFoldedExperts) {
  run_case("moe_26b", 1, true);
}

TEST(AdamW, FirstStepMovesByLearningRateTimesSign) {
  Tensor p = Tensor::from_floats({3}, {1.0f, -2.0f, 0.5f});
  Tensor g = Tensor::from_floats({3}, {0.3f, -4.0f, 0.0f});
  AdamW adamw(AdamWConfig{0.9, 0.999, 1e-8, 0.0});
  adamw.step({{"p", &p, &g}}, 0.1);
  // m̂ = g, v̂ = g²: the update is lr · g / (|g| + eps) ≈ lr · sign(g); a zero gradient does not move.
  EXPECT_NEAR(p.f32()[0], 0.9f, 1e-6);
  EXPECT_NEAR(p.f32()[1], -1.9f, 1e-6);
  EXPECT_EQ(p.f32()[2], 0.5f);
}

TEST(ClipGradNorm, ScalesToTheMaximum) {
  Tensor a = Tensor::from_floats({2}, {3.0f, 0.0f});
  Tensor b = Tensor::from_floats({1}, {4.0f});
  EXPECT_DOUBLE_EQ(clip_grad_norm({&a, &b}, 1.0), 5.0);
  EXPECT_FLOAT_EQ(a.f32()[0], 0.6f);
  EXPECT_FLOAT_EQ(b.f32()[0], 0.8f);
  EXPECT_NEAR(clip_grad_norm({&a, &b}, 10.0), 1.0, 1e-6);  // under the maximum: unchanged
  EXPECT_FLOAT_EQ(a.f32()[0], 0.6f);
}

}  // namespace
}  // namespace g4
