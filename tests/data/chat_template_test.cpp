// Gemma 4's conversation format as ../shared/reference/hf_transformers_gemma4.md §6 writes it out (the
// expected strings below are copied from that description, not produced by the code): turns, the system turn,
// the thinking switch, the thought channel dropped from earlier answers, and what a reply shows.
#include <gtest/gtest.h>

#include "core/error.h"
#include "data/chat_template.h"

namespace g4 {
namespace {

TEST(ChatTemplate, TurnsAndGenerationPrompt) {
  EXPECT_EQ(render_chat({{"user", "Hi"}}), "<bos><|turn>user\nHi<turn|>\n<|turn>model\n");
  EXPECT_EQ(
      render_chat({{"user", "Hi"}, {"assistant", "Hello."}, {"user", "Bye"}}),
      "<bos><|turn>user\nHi<turn|>\n<|turn>model\nHello.<turn|>\n<|turn>user\nBye<turn|>\n<|turn>model\n");
  ChatOptions no_prompt;
  no_prompt.add_generation_prompt = false;
  EXPECT_EQ(render_chat({{"user", "Hi"}}, no_prompt), "<bos><|turn>user\nHi<turn|>\n");
}

TEST(ChatTemplate, SystemTurnAndThinking) {
  EXPECT_EQ(render_chat({{"system", "Be brief."}, {"user", "Hi"}}),
            "<bos><|turn>system\nBe brief.<turn|>\n<|turn>user\nHi<turn|>\n<|turn>model\n");
  ChatOptions thinking;
  thinking.enable_thinking = true;
  EXPECT_EQ(render_chat({{"user", "Hi"}}, thinking),
            "<bos><|turn>system\n<|think|>\n<turn|>\n<|turn>user\nHi<turn|>\n<|turn>model\n");
  EXPECT_EQ(render_chat({{"system", "Be brief."}, {"user", "Hi"}}, thinking),
            "<bos><|turn>system\n<|think|>\nBe brief.<turn|>\n<|turn>user\nHi<turn|>\n<|turn>model\n");
}

TEST(ChatTemplate, EarlierThoughtsStayOutOfTheContext) {
  EXPECT_EQ(
      render_chat({{"user", "2+2?"}, {"model", "<|channel>thought\nadd them<channel|>4"}, {"user", "ok"}}),
      "<bos><|turn>user\n2+2?<turn|>\n<|turn>model\n4<turn|>\n<|turn>user\nok<turn|>\n<|turn>model\n");
}

TEST(ChatTemplate, VisibleAnswer) {
  EXPECT_EQ(visible_answer("<|channel>thought\nhmm<channel|>Four.<turn|>"), "Four.");
  EXPECT_EQ(visible_answer("<|channel>thought\nstill thinking"), "");
  EXPECT_EQ(visible_answer("Plain answer"), "Plain answer");
}

TEST(ChatTemplate, BadRolesAreErrors) {
  EXPECT_THROW(render_chat({{"user", "Hi"}, {"system", "late"}}), Error);
  EXPECT_THROW(render_chat({{"robot", "Hi"}}), Error);
}

}  // namespace
}  // namespace g4
