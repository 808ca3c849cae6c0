// libFuzzer target: the safetensors reader's header and layout validation (io/safetensors.h) on arbitrary
// bytes.
#include <span>

#include "fuzz_harness.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return g4::fuzz::check_parser([&] {
    g4::parse_safetensors_image(std::as_bytes(std::span(data, size)), "fuzz.safetensors", nullptr, nullptr);
  });
}
