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

// Images: mm_token_type_ids and one list of paths per row, checked against the runs of placeholders.
TEST(ScoreInput, ImagesGoWithTheirPlaceholders) {
  const Json doc = Json::parse(
      R"({"input_ids": [[1, 5, 5, 2, 5], [1, 2, 3, 4, 6]], "mm_token_type_ids": [[0, 1, 1, 0, 1], [0, 0, 0, 0, 0]],
          "images": [["a.png", "b.jpg"], []]})");
  Batch b = parse_score_input(doc, 8, "input.json");
  const std::vector<std::string> paths = parse_score_images(doc, b, "input.json", "/data");
  EXPECT_EQ(paths, (std::vector<std::string>{"/data/a.png", "/data/b.jpg"}));
  EXPECT_EQ(b.mm_token_type, (std::vector<std::uint8_t>{0, 1, 1, 0, 1, 0, 0, 0, 0, 0}));
  const auto error = [](const char* json) {
    const Json d = Json::parse(json);
    Batch batch = parse_score_input(d, 8, "input.json");
    try {
      parse_score_images(d, batch, "input.json", ".");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(error(R"({"input_ids": [[1, 2]], "mm_token_type_ids": [[0, 1]], "images": [[]]})")
                .find("images[0] has 0 images but mm_token_type_ids marks 1 image runs"),
            std::string::npos);
  EXPECT_NE(error(R"({"input_ids": [[1, 2]], "mm_token_type_ids": [[0, 2]], "images": [["a"]]})")
                .find("must be 0 or 1"),
            std::string::npos);
  EXPECT_NE(error(R"({"input_ids": [[1, 2]], "images": [["a"]]})").find("go together"), std::string::npos);
  EXPECT_NE(error(R"({"input_ids": [[1, 2]], "mm_token_type_ids": [[0, 1, 1]], "images": [["a"]]})")
                .find("mm_token_type_ids is 1 x 3"),
            std::string::npos);
}

}  // namespace
}  // namespace g4
