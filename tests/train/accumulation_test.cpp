// Gradient accumulation: two micro-batches whose losses are normalised by the global token count give the
// same gradients as the whole batch in one pass.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "data/score_input.h"
#include "model/gemma4_training.h"
#include "test_paths.h"
#include "train/model_loading.h"

namespace g4 {
namespace {

Batch rows(const Batch& b, std::int64_t first, std::int64_t count) {
  Batch out;
  out.batch_size = count;
  out.seq_len = b.seq_len;
  out.explicit_position_ids = b.explicit_position_ids;
  const auto slice = [&](const auto& v) {
    return std::vector<typename std::decay_t<decltype(v)>::value_type>(
        v.begin() + first * b.seq_len, v.begin() + (first + count) * b.seq_len);
  };
  out.input_ids = slice(b.input_ids);
  out.labels = slice(b.labels);
  out.position_ids = slice(b.position_ids);
  if (!b.attention_mask.empty()) out.attention_mask = slice(b.attention_mask);
  return out;
}

TEST(GradientAccumulation, MicroBatchesEqualOneBatch) {
  const std::string dir = test::source_path("tests/fixtures/moe_padding");
  const Gemma4Model model = load_gemma4_model(dir);
  const Batch batch = read_score_input(dir + "/input.json", model.config.text.vocab_size);
  ASSERT_EQ(batch.batch_size, 3);

  Gemma4Weights whole = zeros_like(model.config, model.weights);
  const StepResult all = gemma4_forward_backward(model, batch, whole);

  Gemma4Weights accumulated = zeros_like(model.config, model.weights);
  const StepResult a = gemma4_forward_backward(model, rows(batch, 0, 1), accumulated, all.num_tokens);
  const StepResult b = gemma4_forward_backward(model, rows(batch, 1, 2), accumulated, all.num_tokens);
  EXPECT_EQ(a.num_tokens + b.num_tokens, all.num_tokens);
  EXPECT_NE(a.num_tokens, b.num_tokens);  // uneven micro-batches: a per-micro-batch mean would differ
  EXPECT_NEAR((a.loss_sum + b.loss_sum) / all.loss_sum, 1.0, 1e-6);

  std::vector<Tensor*> expected;
  for_each_parameter(model.config, whole, [&](const std::string&, Tensor& t) { expected.push_back(&t); });
  std::size_t i = 0;
  int compared = 0;
  for_each_parameter(model.config, accumulated, [&](const std::string& name, Tensor& t) {
    const Tensor& e = *expected[i++];
    double diff = 0, norm = 0;
    for (std::int64_t j = 0; j < t.numel(); ++j) {
      diff += std::pow(static_cast<double>(t.f32()[j]) - e.f32()[j], 2);
      norm += std::pow(static_cast<double>(e.f32()[j]), 2);
    }
    if (norm == 0) return;
    EXPECT_LE(std::sqrt(diff / norm), 1e-5) << name;
    ++compared;
  });
  EXPECT_GT(compared, 30);
}

}  // namespace
}  // namespace g4

namespace g4 {
namespace {

// Activation recomputation rebuilds each layer's activations from its input before its backward: on the CPU
// the forward is deterministic, so the gradients are bit-identical to keeping every activation.
TEST(ActivationRecomputation, GradientsAreBitIdentical) {
  for (const char* name : {"moe_26b", "dense_e2b"}) {
    const std::string dir = test::source_path(std::string("tests/fixtures/") + name);
    const Gemma4Model model = load_gemma4_model(dir);
    const Batch batch = read_score_input(dir + "/input.json", model.config.text.vocab_size);
    Gemma4Weights kept = zeros_like(model.config, model.weights);
    Gemma4Weights recomputed = zeros_like(model.config, model.weights);
    const StepResult a = gemma4_forward_backward(model, batch, kept, 0, /*recompute=*/false);
    const StepResult b = gemma4_forward_backward(model, batch, recomputed, 0, /*recompute=*/true);
    EXPECT_EQ(a.loss_sum, b.loss_sum) << name;
    std::vector<Tensor*> expected;
    for_each_parameter(model.config, kept, [&](const std::string&, Tensor& t) { expected.push_back(&t); });
    std::size_t i = 0;
    for_each_parameter(model.config, recomputed, [&](const std::string& n, Tensor& t) {
      EXPECT_EQ(std::memcmp(t.bytes(), expected[i++]->bytes(), t.nbytes()), 0) << name << ": " << n;
    });
  }
}

}  // namespace
}  // namespace g4
