// The CPU forward against transformers 5.17.0 (float64 references) on every committed case: logits, loss
// and the hidden state after every layer.
#include <gtest/gtest.h>

#include <cmath>

#include "data/score_input.h"
#include "fixture_cases.h"
#include "io/safetensors.h"
#include "model/gemma4_model.h"
#include "ops/ops.h"
#include "test_paths.h"
#include "train/model_loading.h"

namespace g4 {
namespace {

class ForwardFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(ForwardFixture, MatchesTransformersInFloat64) {
  const std::string dir = test::source_path("tests/fixtures/" + GetParam());
  const Gemma4Model model = load_gemma4_model(dir);
  const Batch batch = read_score_input(dir + "/input.json", model.config.text.vocab_size);
  const auto expected = SafetensorsFile::open(dir + "/expected.safetensors");
  auto ref = [&](const std::string& name) {
    const TensorInfo* info = expected->find(name);
    EXPECT_NE(info, nullptr) << name;
    return expected->read(*info);
  };

  const ForwardResult out = gemma4_forward(model, batch, /*keep_hidden=*/true);

  const double embed_err = test::relative_error(out.hidden[0], ref("hidden.embed"), batch);
  EXPECT_LE(embed_err, 1e-6) << "embeddings";
  for (int l = 0; l < model.config.text.num_hidden_layers; ++l) {
    const double err =
        test::relative_error(out.hidden[l + 1], ref("hidden.layer." + std::to_string(l)), batch);
    EXPECT_LE(err, 1e-5) << "hidden state after layer " << l;
  }
  const double logit_err = test::relative_error(out.logits, ref("logits"), batch);
  EXPECT_LE(logit_err, 1e-5) << "logits";

  const LossResult loss = ops::causal_lm_loss(out.logits, batch.labels);
  const double expected_loss = ref("loss").f64()[0];
  const double mean = loss.loss_sum / static_cast<double>(loss.num_tokens);
  EXPECT_LE(std::fabs(mean - expected_loss) / std::fabs(expected_loss), 1e-5)
      << "loss " << mean << " vs " << expected_loss;
  // The loss without logits (the head in chunks, what evaluation runs) is the same loss.
  const LossResult chunked = gemma4_loss(model, batch);
  EXPECT_EQ(chunked.num_tokens, loss.num_tokens);
  EXPECT_NEAR(chunked.loss_sum, loss.loss_sum, 1e-9 * std::fabs(loss.loss_sum)) << "gemma4_loss";
  RecordProperty("logits_relative_error", std::to_string(logit_err));
  std::printf("[ case %-16s ] logits rel err %.3g, loss %.8f vs %.8f\n", GetParam().c_str(), logit_err, mean,
              expected_loss);
}

INSTANTIATE_TEST_SUITE_P(Cases, ForwardFixture, ::testing::ValuesIn(test::fixture_cases()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace g4
