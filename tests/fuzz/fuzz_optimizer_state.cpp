// libFuzzer target: optimizer.safetensors of a training checkpoint (train/train_state.h) on arbitrary bytes,
// checked against a fixed model of two parameters, a [2, 3] and b [4]; the first byte's low bit says whether
// master weights are expected (a bf16 checkpoint) or not.
#include "fuzz_harness.h"
#include "train/train_state.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const bool masters = size > 0 && (data[0] & 1) != 0;
  const std::string path = g4::fuzz::write_input_file(g4::fuzz::as_string(data, size), ".safetensors");
  return g4::fuzz::check_parser([&] { g4::read_optimizer_file(path, {{"a", {2, 3}}, {"b", {4}}}, masters); });
}
