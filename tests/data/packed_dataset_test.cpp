// Packing and labels: documents never split across rows, positions restart per document, the first token of a
// document is never a label, and in chat data only the model's turns count.
#include <gtest/gtest.h>

#include <fstream>

#include "core/error.h"
#include "data/packed_dataset.h"
#include "test_paths.h"

namespace g4 {
namespace {

std::string write_lines(const std::string& name, const std::vector<std::string>& lines) {
  const std::string path = test::scratch_dir("data_" + name) + "/data.jsonl";
  std::ofstream out(path);
  for (const auto& l : lines) out << l << "\n";
  return path;
}

TEST(PackedDataset, DocumentsPackWithRestartingPositions) {
  DatasetOptions o;
  o.seq_len = 8;
  o.vocab_size = 264;
  const auto data = load_packed_dataset(write_lines("pack", {R"({"text": "ab"})", R"({"text": "cde"})"}), o);
  // [bos a b eos] [bos c d e eos]: 4 + 5 tokens do not fit in one row of 8, so two rows.
  ASSERT_EQ(data.train.rows(), 2);
  const Batch b = data.train.batch(0, 2);
  std::vector<std::int64_t> first_positions(b.position_ids.begin(), b.position_ids.begin() + 4);
  EXPECT_EQ(first_positions[0], 0);
  for (std::int64_t r = 0; r < 2; ++r) EXPECT_EQ(b.labels[r * 8], -100);  // document starts are never labels
}

TEST(PackedDataset, ChatCountsOnlyModelTurns) {
  DatasetOptions o;
  o.seq_len = 256;
  o.vocab_size = 600;
  o.codec = bpe_codec(test::source_path("tests/data/tokenizer/tokenizer.json"));
  const auto data =
      load_packed_dataset(write_lines("chat", {R"({"messages": [{"role": "user", "content": "hi there"}, )"
                                               R"({"role": "assistant", "content": "hello"}]})"}),
                          o);
  const Batch b = data.train.batch(0, 1);
  const auto user = o.codec.encode("<|turn>user\nhi there<turn|>\n");
  const auto model_turn = o.codec.encode("<|turn>model\nhello<turn|>\n");
  const auto header = o.codec.encode("<|turn>model\n");
  // Layout: bos, user turn, model turn, eos.
  ASSERT_EQ(b.input_ids[0], o.codec.bos);
  for (std::size_t i = 0; i < user.size(); ++i) EXPECT_EQ(b.labels[1 + i], -100) << i;
  const std::size_t start = 1 + user.size();
  int counted = 0;
  for (std::size_t i = 0; i < model_turn.size(); ++i) {
    EXPECT_EQ(b.input_ids[start + i], model_turn[i]);
    if (b.labels[start + i] != -100) ++counted;
  }
  EXPECT_GE(counted, static_cast<int>(model_turn.size() - header.size()));
  EXPECT_LT(counted, static_cast<int>(model_turn.size()));  // the header does not count
  EXPECT_EQ(b.labels[start + model_turn.size()], -100);     // the final eos of a chat does not count
}

TEST(PackedDataset, BadLinesNameTheLine) {
  DatasetOptions o;
  o.vocab_size = 264;
  for (const std::string bad : {R"({"messages": [{"role": "robot", "content": "x"}]})",
                                R"({"input_ids": [1, 999]})", R"([1, 2])", R"({"text": "a")"}) {
    try {
      load_packed_dataset(write_lines("bad", {R"({"text": "fine"})", bad}), o);
      ADD_FAILURE() << "accepted: " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("data.jsonl:2"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace g4
