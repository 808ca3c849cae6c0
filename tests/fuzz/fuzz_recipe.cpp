// libFuzzer target: a YAML training recipe (train/recipe.h), read from a file as `g4moe train` reads it, and
// the same bytes as one key=value override of the command line.
#include "fuzz_harness.h"
#include "train/recipe.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string bytes = g4::fuzz::as_string(data, size);
  const std::string path = g4::fuzz::write_input_file(bytes, ".yaml");
  g4::fuzz::check_parser([&] { g4::load_recipe(path, {}); });
  return g4::fuzz::check_parser([&] { g4::load_recipe("", {"data.path=x", bytes}); });
}
