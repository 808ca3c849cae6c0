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

// The head in chunks of 3 positions (at the real vocabulary a chunk is 256 positions; these fixtures fit in
// one): the loss and every gradient equal the one-chunk run's up to fp32 rounding. The bounds: OpenBLAS
// blocks a 3-row GEMM differently from a whole-batch one, so the logits differ by fp32 ulps (the loss by
// ~1e-8 relative) and the gradients by what that becomes through the layers (up to 1.5e-6 measured on norm
// weights, whose gradients cancel); 1e-7 and 1e-5 sit well below the float64 bounds (1e-5, 1e-4) and far
// above a real error.
TEST_P(BackwardFixture, TheHeadInChunksGivesTheSameLossAndGradients) {
  const std::string dir = test::source_path("tests/fixtures/" + GetParam());
  const Gemma4Model model = load_gemma4_model(dir);
  const Batch batch = read_score_input(dir + "/input.json", model.config.text.vocab_size);
  Gemma4Weights whole = zeros_like(model.config, model.weights),
                chunked = zeros_like(model.config, model.weights);
  const StepResult a = gemma4_forward_backward(model, batch, whole);
  const StepResult b = gemma4_forward_backward(model, batch, chunked, 0, false, /*head_chunk_rows=*/3);
  EXPECT_EQ(a.num_tokens, b.num_tokens);
  EXPECT_NEAR(a.loss_sum, b.loss_sum, 1e-7 * std::fabs(a.loss_sum));
  EXPECT_EQ(gemma4_loss(model, batch, 3).loss_sum, b.loss_sum)
      << "gemma4_loss: the same chunks, the same bits";
  std::vector<Tensor*> chunked_grads;
  for_each_parameter(model.config, chunked,
                     [&](const std::string&, Tensor& t) { chunked_grads.push_back(&t); });
  std::size_t i = 0;
  for_each_parameter(model.config, whole, [&](const std::string& name, Tensor& t) {
    const Tensor& c = *chunked_grads[i++];
    double diff = 0, norm = 0;
    for (std::int64_t j = 0; j < t.numel(); ++j) {
      diff += std::pow(static_cast<double>(c.f32()[j]) - t.f32()[j], 2);
      norm += std::pow(static_cast<double>(t.f32()[j]), 2);
    }
    EXPECT_LE(std::sqrt(diff), 1e-5 * std::sqrt(norm)) << name;
  });
}

INSTANTIATE_TEST_SUITE_P(Cases, BackwardFixture, ::testing::ValuesIn(test::fixture_cases()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace g4
