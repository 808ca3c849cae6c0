// libFuzzer target: training data tokenised and packed (data/packed_dataset.h) with the byte tokenizer, as
// `g4moe train` reads it: the bytes as a JSONL file (text, input_ids, chat messages or prompt/completion per
// line), then the same bytes as a plain-text file (documents split at blank lines), and that text file as the
// separate eval file of a fixed, valid train set.
#include <cstdio>
#include <cstdlib>

#include "data/packed_dataset.h"
#include "fuzz_harness.h"

namespace {

// write_input_file keeps one path per process, so the other files get their own.
std::string write_file(const std::string& bytes, const char* suffix) {
  const std::string path = "/tmp/g4moe-fuzz-" + std::to_string(::getpid()) + suffix;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) std::abort();
  std::fclose(f);
  return path;
}

g4::DatasetOptions options() {
  g4::DatasetOptions o;
  o.seq_len = 16;
  o.vocab_size = 260;
  o.eval_fraction = 0.25;
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string bytes = g4::fuzz::as_string(data, size);
  const std::string jsonl = g4::fuzz::write_input_file(bytes, ".jsonl");
  const std::string text = write_file(bytes, ".txt");
  static const std::string train = write_file("{\"text\": \"ab\"}\n", ".train.jsonl");
  g4::fuzz::check_parser([&] { g4::load_packed_dataset(jsonl, options()); });
  g4::fuzz::check_parser([&] { g4::load_packed_dataset(text, options()); });
  return g4::fuzz::check_parser([&] {
    g4::DatasetOptions o = options();
    o.eval_path = text;
    g4::load_packed_dataset(train, o);
  });
}
