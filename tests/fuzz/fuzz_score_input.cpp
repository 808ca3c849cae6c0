// libFuzzer target: the JSON input of `g4moe score` (ids, masks, positions, labels against a vocabulary of
// 96).
#include "data/score_input.h"
#include "fuzz_harness.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return g4::fuzz::check_parser([&] {
    g4::parse_score_input(g4::parse_json_strict(g4::fuzz::as_string(data, size), "input.json"), 96,
                          "input.json");
  });
}
