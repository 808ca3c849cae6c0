// Continuous batching: a request's tokens are the same whether it runs alone or joins a batch that is already
// decoding (also in a reused slot, sampled as well as greedy); a callback can end a request; a request that
// does not fit, or arrives with every slot busy, is refused without disturbing the others.
#include <gtest/gtest.h>

#include "core/allocator.h"
#include "core/error.h"
#include "generate/engine.h"
#include "generate/generation.h"
#include "test_paths.h"
#include "train/model_loading.h"

namespace g4 {
namespace {

struct Outcome {
  std::vector<std::int64_t> tokens;
  std::optional<FinishReason> reason;
};

GenerationRequest request_for(const std::vector<std::int64_t>& prompt, const GenerationParams& params,
                              std::uint64_t stream, Outcome& outcome, std::int64_t cancel_after = -1) {
  GenerationRequest r;
  r.prompt = prompt;
  r.params = params;
  r.stream = stream;
  r.on_token = [&outcome, cancel_after](std::int64_t t) {
    outcome.tokens.push_back(t);
    return cancel_after < 0 || static_cast<std::int64_t>(outcome.tokens.size()) < cancel_after;
  };
  r.on_finish = [&outcome](FinishReason why) { outcome.reason = why; };
  return r;
}

class Engine : public ::testing::TestWithParam<bool> {};  // greedy or sampled

TEST_P(Engine, LateJoinersGetTheTokensTheyGetAlone) {
  const Gemma4Model model = load_gemma4_model(test::source_path("tests/fixtures/moe_26b"));
  GenerationParams params;
  params.max_new_tokens = 9;
  params.sampling.greedy = GetParam();
  params.seed = 11;
  const std::vector<std::vector<std::int64_t>> prompts = {
      {2, 17, 33, 4, 61, 9, 12, 45}, {2, 50, 6}, {2, 5, 73, 30, 41, 8, 66, 19, 24, 52}};
  // Alone: each prompt in its own engine.
  std::vector<Outcome> alone(prompts.size());
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    GenerationEngine engine(model, host_allocator(), DType::f32, {20}, 4);
    engine.start(request_for(prompts[i], params, i, alone[i]));
    while (engine.step()) {
    }
    ASSERT_EQ(alone[i].reason, FinishReason::length);
    ASSERT_EQ(alone[i].tokens.size(), 9u);
  }
  // Together in two slots: request 2 waits until one finishes, then reuses its slot.
  GenerationEngine engine(model, host_allocator(), DType::f32, {20, 20}, 4);
  std::vector<Outcome> together(prompts.size());
  engine.start(request_for(prompts[0], params, 0, together[0]));
  for (int i = 0; i < 3; ++i) engine.step();
  engine.start(request_for(prompts[1], params, 1, together[1]));  // joins while 0 decodes
  EXPECT_THROW(engine.start(request_for(prompts[2], params, 2, together[2])), Error);  // no slot free
  while (!together[0].reason || !together[1].reason) engine.step();
  engine.start(request_for(prompts[2], params, 2, together[2]));
  while (engine.step()) {
  }
  for (std::size_t i = 0; i < prompts.size(); ++i)
    EXPECT_EQ(together[i].tokens, alone[i].tokens) << "request " << i;
}

INSTANTIATE_TEST_SUITE_P(GreedyAndSampled, Engine, ::testing::Values(true, false));

TEST(EngineRequests, CancelRefuseAndStop) {
  const Gemma4Model model = load_gemma4_model(test::source_path("tests/fixtures/moe_26b"));
  GenerationEngine engine(model, host_allocator(), DType::f32, {12}, 512);
  GenerationParams params;
  params.max_new_tokens = 8;
  Outcome cancelled, too_long, bad;
  engine.start(request_for({2, 9, 10}, params, 0, cancelled, /*cancel_after=*/3));
  while (engine.step()) {
  }
  EXPECT_EQ(cancelled.tokens.size(), 3u);
  EXPECT_EQ(cancelled.reason, FinishReason::cancelled);
  EXPECT_EQ(engine.free_slots(), 1);
  params.max_new_tokens = 10;  // 3 + 10 > 12
  EXPECT_THROW(engine.start(request_for({2, 9, 10}, params, 0, too_long)), Error);
  params.max_new_tokens = 2;
  EXPECT_THROW(engine.start(request_for({2, 96}, params, 0, bad)), Error);  // outside the vocabulary of 96
  EXPECT_THROW(engine.start(request_for({}, params, 0, bad)), Error);
  EXPECT_EQ(engine.free_slots(), 1);
  // A stop token ends the request with reason stop, the token kept.
  Outcome first;
  engine.start(request_for({2, 9, 10}, params, 0, first));
  while (engine.step()) {
  }
  params.stop_ids = {first.tokens[0]};
  Outcome stopped;
  engine.start(request_for({2, 9, 10}, params, 0, stopped));
  while (engine.step()) {
  }
  EXPECT_EQ(stopped.tokens, std::vector<std::int64_t>{first.tokens[0]});
  EXPECT_EQ(stopped.reason, FinishReason::stop);
}

}  // namespace
}  // namespace g4
