// libFuzzer target: the JSON input of `g4moe score` (ids, masks, positions, labels against a vocabulary of
// 96; with images, mm_token_type_ids and the per-row image paths).
#include "data/score_input.h"
#include "fuzz_harness.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return g4::fuzz::check_parser([&] {
    const g4::Json doc = g4::parse_json_strict(g4::fuzz::as_string(data, size), "input.json");
    g4::Batch batch = g4::parse_score_input(doc, 96, "input.json");
    g4::parse_score_images(doc, batch, "input.json", "/nonexistent");
  });
}
