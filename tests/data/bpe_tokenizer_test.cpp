// The C++ tokenizer against transformers' fast tokenizer on a Gemma-style tokenizer.json
// (tests/data/tokenizer, made by tools/make_test_tokenizer.py): the same ids and the same decoding.
#include <gtest/gtest.h>

#include "data/bpe_tokenizer.h"
#include "io/json.h"
#include "test_paths.h"

namespace g4 {
namespace {

TEST(BpeTokenizer, MatchesTransformersFastTokenizer) {
  const BpeTokenizer tok = BpeTokenizer::load(test::source_path("tests/data/tokenizer/tokenizer.json"));
  const Json expected = read_json_file(test::source_path("tests/data/tokenizer/expected.json"));
  int cases = 0;
  for (const Json& c : expected["cases"]) {
    const std::string text = c["text"];
    const auto ids = tok.encode(text);
    EXPECT_EQ(ids, c["ids"].get<std::vector<std::int64_t>>()) << text;
    EXPECT_EQ(tok.decode(ids), c["decoded"].get<std::string>()) << text;
    ++cases;
  }
  EXPECT_EQ(cases, 8);
}

TEST(BpeTokenizer, EveryStringRoundTrips) {
  const BpeTokenizer tok = BpeTokenizer::load(test::source_path("tests/data/tokenizer/tokenizer.json"));
  for (const std::string s :
       {"a", "  ", "\xf0\x9f\x99\x82\xf0\x9f\x99\x82", "x<|turn>y<turn|>", "\x01\x7f end"})
    EXPECT_EQ(tok.decode(tok.encode(s)), s);
}

}  // namespace
}  // namespace g4
