// libFuzzer target: JSONL training data (text, input_ids or chat messages per line) tokenised and packed
// (data/packed_dataset.h) with the byte tokenizer, as `g4moe train` reads it.
#include "data/packed_dataset.h"
#include "fuzz_harness.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = g4::fuzz::write_input_file(g4::fuzz::as_string(data, size), ".jsonl");
  return g4::fuzz::check_parser([&] {
    g4::DatasetOptions options;
    options.seq_len = 16;
    options.vocab_size = 260;
    options.eval_fraction = 0.25;
    g4::load_packed_dataset(path, options);
  });
}
