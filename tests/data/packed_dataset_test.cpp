// Packing and labels: documents never split across rows, positions restart per document, the first token of a
// document is never a label, in chat data only the model's turns count and in prompt/completion data only the
// completion; plain text files split at blank lines; a separate eval file; data with nothing to train on.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "core/error.h"
#include "data/packed_dataset.h"
#include "test_errors.h"
#include "test_paths.h"

namespace g4 {
namespace {

std::string write_lines(const std::string& name, const std::vector<std::string>& lines) {
  const std::string path = test::scratch_dir("data_" + name) + "/data.jsonl";
  std::ofstream out(path);
  for (const auto& l : lines) out << l << "\n";
  return path;
}

std::string write_file(const std::string& dir, const std::string& name, const std::string& text) {
  const std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// The documents of packed rows, each as its tokens after BOS up to EOS (pads dropped), sorted.
std::vector<std::vector<std::int64_t>> documents_of(const PackedRows& rows, const Tokenizer& tokenizer) {
  std::vector<std::vector<std::int64_t>> docs;
  for (std::size_t i = 0; i < rows.input_ids.size(); ++i) {
    if (rows.position_ids[i] == 0 && rows.input_ids[i] == tokenizer.bos)
      docs.emplace_back();
    else if (!docs.empty() && rows.input_ids[i] != tokenizer.eos && rows.input_ids[i] != tokenizer.pad)
      docs.back().push_back(rows.input_ids[i]);
  }
  std::sort(docs.begin(), docs.end());
  return docs;
}

DatasetOptions byte_options(std::int64_t seq_len) {
  DatasetOptions o;
  o.seq_len = seq_len;
  o.vocab_size = 264;
  return o;
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
  o.tokenizer = tokenizer_from_json(test::source_path("tests/data/tokenizer/tokenizer.json"));
  const auto data =
      load_packed_dataset(write_lines("chat", {R"({"messages": [{"role": "user", "content": "hi there"}, )"
                                               R"({"role": "assistant", "content": "hello"}]})"}),
                          o);
  const Batch b = data.train.batch(0, 1);
  const auto user = o.tokenizer.encode("<|turn>user\nhi there<turn|>\n");
  const auto model_turn = o.tokenizer.encode("<|turn>model\nhello<turn|>\n");
  const auto header = o.tokenizer.encode("<|turn>model\n");
  // Layout: bos, user turn, model turn, eos.
  ASSERT_EQ(b.input_ids[0], o.tokenizer.bos);
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

TEST(PackedDataset, PromptCompletionCountsOnlyTheCompletionAndEos) {
  const DatasetOptions o = byte_options(16);
  const auto data =
      load_packed_dataset(write_lines("prompt", {R"({"prompt": "ab", "completion": "cd"})"}), o);
  const Batch b = data.train.batch(0, 1);
  const auto id = [&](char c) { return o.tokenizer.encode(std::string(1, c)).at(0); };
  // bos a b c d eos: the prompt (a, b) is context; c, d and the eos are targets.
  const std::vector<std::int64_t> ids = {o.tokenizer.bos, id('a'), id('b'),
                                         id('c'),         id('d'), o.tokenizer.eos};
  const std::vector<std::int64_t> labels = {-100, -100, -100, id('c'), id('d'), o.tokenizer.eos};
  EXPECT_EQ(std::vector<std::int64_t>(b.input_ids.begin(), b.input_ids.begin() + 6), ids);
  EXPECT_EQ(std::vector<std::int64_t>(b.labels.begin(), b.labels.begin() + 6), labels);
  EXPECT_EQ(data.untrained_documents, 0);
}

TEST(PackedDataset, PromptCompletionTypesAreCheckedWithTheLine) {
  const DatasetOptions o = byte_options(16);
  for (const std::string bad :
       {R"({"prompt": 1, "completion": "x"})", R"({"prompt": "x", "completion": ["y"]})",
        R"({"prompt": "x"})", R"({"completion": "x"})"}) {
    const std::string msg = test::error_of([&] {
      load_packed_dataset(write_lines("prompt_bad", {R"({"text": "ok"})", bad}), o);
    });
    EXPECT_NE(msg.find("data.jsonl:2"), std::string::npos) << bad << ": " << msg;
    EXPECT_TRUE(msg.find("\"prompt\"") != std::string::npos ||
                msg.find("\"completion\"") != std::string::npos)
        << bad << ": " << msg;
  }
}

TEST(PackedDataset, TextFilesSplitIntoDocumentsAtBlankLines) {
  const DatasetOptions o = byte_options(32);
  const std::string dir = test::scratch_dir("data_text");
  const std::string path = write_file(dir, "book.txt", "\nab\r\ncd\n\n \t\n\nef\n\n");
  const auto data = load_packed_dataset(path, o);
  EXPECT_EQ(data.documents, 2);
  EXPECT_EQ(documents_of(data.train, o.tokenizer),
            (std::vector<std::vector<std::int64_t>>{o.tokenizer.encode("ab\ncd"), o.tokenizer.encode("ef")}));
  // Text counts in the loss: every token but the first of each document is a label.
  const auto labelled = std::count_if(data.train.labels.begin(), data.train.labels.end(),
                                      [](std::int64_t l) { return l != -100; });
  EXPECT_EQ(labelled, (1 + 5 + 1) + (1 + 2 + 1) - 2);
}

TEST(PackedDataset, ADirectoryReadsItsTextFilesSortedByName) {
  const DatasetOptions o = byte_options(32);
  const std::string dir = test::scratch_dir("data_text_dir");
  write_file(dir, "b.txt", "bb\n\nbbb\n");
  write_file(dir, "a.txt", "aa");  // no final newline
  write_file(dir, "empty.txt", "");
  write_file(dir, "notes.md", "not data\n");
  const auto data = load_packed_dataset(dir, o);
  EXPECT_EQ(data.documents, 3);
  EXPECT_EQ(documents_of(data.train, o.tokenizer),
            (std::vector<std::vector<std::int64_t>>{o.tokenizer.encode("aa"), o.tokenizer.encode("bb"),
                                                    o.tokenizer.encode("bbb")}));

  const std::string none = test::scratch_dir("data_text_none");
  write_file(none, "notes.md", "x\n");
  std::string msg = test::error_of([&] { load_packed_dataset(none, o); });
  EXPECT_NE(msg.find("no .txt files"), std::string::npos) << msg;
  EXPECT_NE(msg.find(none), std::string::npos) << msg;
  const std::string blank = test::scratch_dir("data_text_blank");
  write_file(blank, "empty.txt", "\n \n");
  msg = test::error_of([&] { load_packed_dataset(blank, o); });
  EXPECT_NE(msg.find("no documents in " + blank), std::string::npos) << msg;
}

TEST(PackedDataset, TextErrorsNameTheFileAndLine) {
  DatasetOptions o = byte_options(8);
  o.truncate = false;
  const std::string dir = test::scratch_dir("data_text_bad");
  const std::string path = write_file(dir, "long.txt", "ok\n\nthis document is too long\n");
  std::string msg = test::error_of([&] { load_packed_dataset(path, o); });
  EXPECT_NE(msg.find(path + ":3"), std::string::npos) << msg;
  const std::string latin1 = write_file(dir, "latin1.txt", "caf\xe9\n");
  msg = test::error_of([&] { load_packed_dataset(latin1, o); });
  EXPECT_NE(msg.find("not valid UTF-8"), std::string::npos) << msg;
  EXPECT_NE(msg.find(latin1 + ":1"), std::string::npos) << msg;
}

TEST(PackedDataset, AnEvalFileReplacesTheEvalFraction) {
  DatasetOptions o = byte_options(32);
  o.eval_fraction = 0.5;  // not used
  const std::string train =
      write_lines("eval_train", {R"({"text": "t1"})", R"({"text": "t2"})", R"({"text": "t3"})"});
  const std::string dir = test::scratch_dir("data_eval_file");
  o.eval_path = write_file(dir, "eval.txt", "e1\n\ne2\n");
  const auto data = load_packed_dataset(train, o);
  EXPECT_EQ(data.documents, 5);
  EXPECT_EQ(documents_of(data.train, o.tokenizer),
            (std::vector<std::vector<std::int64_t>>{o.tokenizer.encode("t1"), o.tokenizer.encode("t2"),
                                                    o.tokenizer.encode("t3")}));
  EXPECT_EQ(documents_of(data.eval, o.tokenizer),
            (std::vector<std::vector<std::int64_t>>{o.tokenizer.encode("e1"), o.tokenizer.encode("e2")}));

  o.eval_path = write_file(dir, "empty.jsonl", "\n");
  const std::string msg = test::error_of([&] { load_packed_dataset(train, o); });
  EXPECT_NE(msg.find("no documents in eval data " + o.eval_path), std::string::npos) << msg;
}

TEST(PackedDataset, DataWithNoTargetIsAnErrorNamingTheFile) {
  const DatasetOptions o = byte_options(64);
  const std::string user_only = R"({"messages": [{"role": "user", "content": "hi"}]})";
  const std::string path = write_lines("no_target", {user_only, user_only});
  const std::string msg = test::error_of([&] { load_packed_dataset(path, o); });
  EXPECT_NE(msg.find("no token of " + path + " counts in the loss"), std::string::npos) << msg;

  // One trainable document is enough; the others are counted for a warning.
  const auto data = load_packed_dataset(
      write_lines("some_target", {user_only, R"({"text": "x"})", R"({"prompt": "p", "completion": ""})"}), o);
  EXPECT_EQ(data.documents, 3);
  EXPECT_EQ(data.untrained_documents, 1);  // the empty completion still trains its eos

  DatasetOptions with_eval = o;
  with_eval.eval_path = write_lines("no_target_eval", {user_only});
  const std::string eval_msg = test::error_of(
      [&] { load_packed_dataset(write_lines("target_train", {R"({"text": "x"})"}), with_eval); });
  EXPECT_NE(eval_msg.find("no token of " + with_eval.eval_path + " counts in the loss"), std::string::npos)
      << eval_msg;
}

// An image part becomes <|image>, one placeholder per soft token as the processor sizes the image, <image|>:
// the processor's count, placeholders flagged in mm_token_type, no label on any image token, the row's
// images in placeholder order; text around it tokenised as before.
TEST(PackedDataset, ImagePartsBecomeTheirTokens) {
  const std::string dir = test::scratch_dir("data_images");
  std::ofstream(dir + "/data.jsonl")
      << R"({"messages": [{"role": "user", "content": [{"type": "text", "text": "see "}, )"
      << R"({"type": "image", "path": ")" << test::source_path("tests/fixtures/images/chelsea_420.jpg")
      << R"("}, {"type": "image", "path": ")" << test::source_path("tests/fixtures/images/astronaut_tiny.png")
      << R"("}]}, {"role": "model", "content": "ok"}]})"
      << "\n";
  DatasetOptions o;
  o.seq_len = 512;
  o.vocab_size = 300;
  o.images = {256, 257, 258, ImageProcessorConfig{}};
  o.images.processor.patch_size = 4;  // chelsea 451x300 -> 120x72 pixels, 30x18 patches, 60 soft tokens
  o.images.processor.pooling_kernel_size = 3;
  o.images.processor.max_soft_tokens = 70;
  const PackedDataset data = load_packed_dataset(dir + "/data.jsonl", o);
  const PackedRows& rows = data.train;
  ASSERT_TRUE(rows.has_images());
  ASSERT_EQ(rows.row_images.size(), 1u);
  ASSERT_EQ(rows.row_images[0].size(), 2u);
  const std::int64_t soft0 = rows.row_images[0][0].soft_tokens, soft1 = rows.row_images[0][1].soft_tokens;
  const auto [h, w] = target_image_size(300, 451, o.images.processor, "chelsea");
  EXPECT_EQ(soft0, (h / 4) * (w / 4) / 9);
  const std::vector<std::int64_t> head = o.tokenizer.encode("<|turn>user\nsee ");
  std::vector<std::int64_t> want = {o.tokenizer.bos};
  want.insert(want.end(), head.begin(), head.end());
  want.push_back(256);
  want.insert(want.end(), static_cast<std::size_t>(soft0), 257);
  want.push_back(258);
  want.push_back(256);
  want.insert(want.end(), static_cast<std::size_t>(soft1), 257);
  want.push_back(258);
  const std::vector<std::int64_t> tail = o.tokenizer.encode("<turn|>\n");
  want.insert(want.end(), tail.begin(), tail.end());
  ASSERT_GE(rows.input_ids.size(), want.size());
  EXPECT_TRUE(std::equal(want.begin(), want.end(), rows.input_ids.begin()));
  std::int64_t flagged = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    flagged += rows.mm_token_type[i];
    EXPECT_EQ(rows.mm_token_type[i], want[i] == 257 ? 1 : 0) << i;
    if (want[i] >= 256) {
      EXPECT_EQ(rows.labels[i], -100) << i;
    }
  }
  EXPECT_EQ(flagged, soft0 + soft1);
  EXPECT_EQ(rows.images(0, 1).size(), 2u);
  const Batch b = rows.batch(0, 1);
  EXPECT_EQ(b.mm_token_type.size(), static_cast<std::size_t>(b.tokens()));
}

}  // namespace
}  // namespace g4
