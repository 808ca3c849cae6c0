// The CPU backward against transformers 5.17.0's autograd (float64) on every committed case: the gradient of
// the mean causal-LM loss for every trainable tensor, in the checkpoint's names and layout.
#include <gtest/gtest.h>

#include <cmath>

#include "data/score_input.h"
#include "fixture_cases.h"
#include "io/safetensors.h"
#include "model/gemma4_training.h"
#include "test_paths.h"
#include "train/checkpoint_layout.h"
#include "train/model_loading.h"

namespace g4 {
namespace {

// Relative Frobenius error; for a reference that is exactly zero, the actual norm itself (must be ~0).
double tensor_error(const Tensor& actual, const Tensor& expected) {
  double diff = 0, norm = 0;
  for (std::int64_t i = 0; i < expected.numel(); ++i) {
    const double a = actual.f32()[i], e = expected.f64()[i];
    if (std::isnan(a)) return NAN;
    diff += (a - e) * (a - e);
    norm += e * e;
  }
  return norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

class BackwardFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(BackwardFixture, GradientsMatchTransformersAutograd) {
  const std::string dir = test::source_path("tests/fixtures/" + GetParam());
  const Gemma4Model model = load_gemma4_model(dir);
  const Batch batch = read_score_input(dir + "/input.json", model.config.text.vocab_size);
  const auto expected = SafetensorsFile::open(dir + "/expected.safetensors");

  Gemma4Weights grads = zeros_like(model.config, model.weights);
  const StepResult step = gemma4_forward_backward(model, batch, grads);
  const double loss = step.loss_sum / static_cast<double>(step.num_tokens);
  const double expected_loss = expected->read(*expected->find("loss")).f64()[0];
  EXPECT_LE(std::fabs(loss - expected_loss) / expected_loss, 1e-5);

  int compared = 0;
  double worst = 0;
  std::string worst_name;
  for (auto& [name, grad] : gradients_in_checkpoint_layout(model.config, grads, Checkpoint::open(dir))) {
    const TensorInfo* info = expected->find("grad." + name);
    ASSERT_NE(info, nullptr) << "no reference gradient for " << name;
    ASSERT_EQ(info->shape, grad.shape()) << name;
    const double err = tensor_error(grad, expected->read(*info));
    EXPECT_LE(err, 1e-4) << "gradient of " << name;
    if (!(err <= worst)) {
      worst = err;
      worst_name = name;
    }
    ++compared;
  }
  EXPECT_GT(compared, 10);
  std::printf("[ case %-16s ] %d gradients, worst relative error %.3g (%s)\n", GetParam().c_str(), compared,
              worst, worst_name.c_str());
}

INSTANTIATE_TEST_SUITE_P(Cases, BackwardFixture, ::testing::ValuesIn(test::fixture_cases()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace g4
