// The logits processors and warpers against transformers 5.17's own (tests/fixtures/generate/sampling.json,
// tools/make_generate_fixtures.py: the list model._get_logits_processor builds, applied in float32), and the
// token choice: argmax when greedy, draws that follow the softmax and never pick a filtered token.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "data/generation_config.h"  // JSON (io/json.h) reaches this layer through data/
#include "generate/engine.h"
#include "generate/sampling.h"
#include "test_paths.h"

namespace g4 {
namespace {

// A fixture case's settings as transformers resolves them (its defaults: temperature 1, top_k 50, top_p 1).
SamplingParams params_of(const Json& s) {
  SamplingParams p;
  p.greedy = !s.value("do_sample", false);
  p.temperature = s.value("temperature", 1.0);
  p.top_k = s.value("top_k", std::int64_t{50});
  p.top_p = s.value("top_p", 1.0);
  p.min_p = s.value("min_p", 0.0);
  p.repetition_penalty = s.value("repetition_penalty", 1.0);
  return p;
}

TEST(Sampling, ProcessorsMatchTransformers) {
  const Json doc = read_json_file(test::source_path("tests/fixtures/generate/sampling.json"));
  int filtered_somewhere = 0;
  for (const Json& c : doc.at("cases")) {
    const Json& s = c.at("settings");
    const auto seen = c.at("seen").get<std::vector<std::int64_t>>();
    const auto generated = static_cast<std::int64_t>(seen.size()) - c.at("prompt_length").get<std::int64_t>();
    std::vector<std::int64_t> suppressed;
    if (generated < s.value("min_new_tokens", std::int64_t{0}))
      suppressed = c.at("eos_token_id").get<std::vector<std::int64_t>>();
    auto logits = c.at("logits").get<std::vector<float>>();
    process_logits(logits, seen, suppressed, params_of(s));
    const Json& want = c.at("processed");
    ASSERT_EQ(want.size(), logits.size());
    for (std::size_t i = 0; i < logits.size(); ++i) {
      SCOPED_TRACE(s.dump() + " token " + std::to_string(i));
      if (want[i].is_null()) {
        EXPECT_EQ(logits[i], -std::numeric_limits<float>::infinity());
        ++filtered_somewhere;
      } else {
        const double w = want[i].get<double>();
        EXPECT_NEAR(logits[i], w, 1e-6 * std::max(1.0, std::abs(w)));
      }
    }
  }
  EXPECT_GT(filtered_somewhere, 0) << "no case filters a token: the fixture checks too little";
}

TEST(Sampling, GreedyTakesTheFirstMaximum) {
  std::mt19937_64 rng(1);
  const std::vector<float> logits{0.5f, 2.0f, -1.0f, 2.0f};
  EXPECT_EQ(pick_token(logits, SamplingParams{}, rng), 1);
}

TEST(Sampling, DrawsFollowTheSoftmaxAndSkipFilteredTokens) {
  SamplingParams p;
  p.greedy = false;
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> logits{std::log(0.5f), -inf, std::log(0.3f), std::log(0.2f)};
  std::mt19937_64 rng(42);
  std::vector<int> counts(4, 0);
  const int draws = 40000;
  for (int i = 0; i < draws; ++i) ++counts[static_cast<std::size_t>(pick_token(logits, p, rng))];
  EXPECT_EQ(counts[1], 0);
  // Binomial standard deviations are below 0.0025 here: 0.01 is four of them.
  EXPECT_NEAR(counts[0] / double(draws), 0.5, 0.01);
  EXPECT_NEAR(counts[2] / double(draws), 0.3, 0.01);
  EXPECT_NEAR(counts[3] / double(draws), 0.2, 0.01);
}

TEST(Sampling, ParametersOutOfRangeAreErrors) {
  SamplingParams p;
  p.greedy = false;
  p.temperature = 0;
  EXPECT_THROW(check_sampling_params(p), Error);
  p.temperature = 1;
  p.top_p = 0;
  EXPECT_THROW(check_sampling_params(p), Error);
  p.top_p = 1;
  p.min_p = 1.5;
  EXPECT_THROW(check_sampling_params(p), Error);
  p.min_p = 0;
  p.repetition_penalty = 0;
  EXPECT_THROW(check_sampling_params(p), Error);
  p.repetition_penalty = 1;
  EXPECT_NO_THROW(check_sampling_params(p));
}

}  // namespace
}  // namespace g4
