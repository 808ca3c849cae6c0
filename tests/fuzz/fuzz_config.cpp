// libFuzzer target: config.json (strict JSON, then the Gemma 4 config parser, both layouts).
#include "fuzz_harness.h"
#include "io/config.h"
#include "io/json.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return g4::fuzz::check_parser([&] {
    g4::parse_config(g4::parse_json_strict(g4::fuzz::as_string(data, size), "config.json"), "config.json");
  });
}
