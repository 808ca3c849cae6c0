// libFuzzer target: the JSON input of `g4moe generate` (ragged rows of ids against a vocabulary of 96) and a
// checkpoint's generation_config.json (the same bytes through both parsers).
#include "data/generation_config.h"
#include "data/generation_input.h"
#include "fuzz_harness.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text = g4::fuzz::as_string(data, size);
  g4::fuzz::check_parser(
      [&] { g4::parse_generation_input(g4::parse_json_strict(text, "input.json"), 96, "input.json"); });
  return g4::fuzz::check_parser([&] {
    g4::parse_generation_config(g4::parse_json_strict(text, "generation_config.json"),
                                "generation_config.json");
  });
}
