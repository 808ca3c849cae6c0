// libFuzzer target: trainer_state.json of a training checkpoint (train/train_state.h) on arbitrary bytes:
// strict JSON, then every field's type and range.
#include "fuzz_harness.h"
#include "io/json.h"
#include "train/train_state.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return g4::fuzz::check_parser([&] {
    const g4::Json doc = g4::parse_json_strict(g4::fuzz::as_string(data, size), "trainer_state.json");
    g4::parse_trainer_state(doc, "trainer_state.json");
  });
}
