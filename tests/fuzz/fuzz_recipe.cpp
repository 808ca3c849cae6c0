// libFuzzer target: a YAML training recipe (train/recipe.h), read from a file as `g4moe train` reads it.
#include "fuzz_harness.h"
#include "train/recipe.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = g4::fuzz::write_input_file(g4::fuzz::as_string(data, size), ".yaml");
  return g4::fuzz::check_parser([&] { g4::load_recipe(path, {}); });
}
