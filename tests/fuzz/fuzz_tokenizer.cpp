// libFuzzer target: a checkpoint's tokenizer.json (data/bpe_tokenizer.h); when it loads, it must also encode
// and decode a fixed text without failing.
#include "data/bpe_tokenizer.h"
#include "fuzz_harness.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = g4::fuzz::write_input_file(g4::fuzz::as_string(data, size), ".json");
  return g4::fuzz::check_parser([&] {
    const auto tokenizer = g4::BpeTokenizer::load(path);
    tokenizer.decode(tokenizer.encode("Hello wörld <start_of_turn> 123\n"));
  });
}
