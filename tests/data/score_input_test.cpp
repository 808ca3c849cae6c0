// score_input.h: sizes of the input against the model's vocabulary.
#include "data/score_input.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace g4 {
namespace {

std::string error_of(const Json& doc, std::int64_t vocab_size) {
  try {
    parse_score_input(doc, vocab_size, "input.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ScoreInput, SmallInputParses) {
  const Batch b = parse_score_input(Json::parse(R"({"input_ids": [[1, 2, 3], [4, 5, 6]]})"), 8, "input.json");
  EXPECT_EQ(b.batch_size, 2);
  EXPECT_EQ(b.seq_len, 3);
  EXPECT_EQ(b.labels, b.input_ids);
}

// The logits [B, S, vocab] of an input must fit in 64 bits and in memory: a clear error naming the file,
// not a wrapped size or a bad_alloc later.
TEST(ScoreInput, LogitsThatCannotExistAreClearErrors) {
  const Json doc = Json::parse(R"({"input_ids": [[1, 2, 3, 4], [5, 6, 7, 0]]})");
  const std::string wraps = error_of(doc, std::int64_t{1} << 61);
  EXPECT_NE(wraps.find("logits of input_ids (input.json): size product overflows: 8 x 2305843009213693952"),
            std::string::npos)
      << wraps;
  const std::string bytes = error_of(doc, std::int64_t{1} << 59);  // 2^62 elements fit, 2^64 bytes do not
  EXPECT_NE(bytes.find("byte size overflows"), std::string::npos) << bytes;
  const std::string memory = error_of(doc, std::int64_t{1} << 50);  // 32 PiB of logits
  EXPECT_NE(memory.find("input_ids has 2 x 4 tokens, whose F32 logits (vocab_size 1125899906842624) need "
                        "36028797018963968 bytes, more than this machine's memory"),
            std::string::npos)
      << memory;
  EXPECT_NE(memory.find("(input.json)"), std::string::npos) << memory;
}

}  // namespace
}  // namespace g4
