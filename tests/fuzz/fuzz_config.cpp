// libFuzzer target: config.json (strict JSON, then the Gemma 4 config parser, both layouts). A config the
// parser accepts must imply a tensor layout whose sizes cannot overflow: every tensor's element count and
// byte size (at 8 bytes an element) fits in 64 bits and the parameter total is at most 2^53. An overflow
// there, or a g4::Error from those sizes after the parser accepted, is a finding.
#include <cstdio>
#include <cstdlib>

#include "core/checked_math.h"
#include "fuzz_harness.h"
#include "io/config.h"
#include "io/json.h"
#include "model/weight_layout.h"

namespace {

void check_sizes_of(const g4::ModelConfig& m) {
  try {
    const g4::ParameterCounts counts = g4::count_parameters(m.text);
    if (counts.total < 0 || counts.total > (std::int64_t{1} << 53)) {
      std::fprintf(stderr, "accepted config with %lld parameters\n", static_cast<long long>(counts.total));
      std::abort();
    }
    for (bool native : {false, true}) {
      std::uint64_t bytes = 0;
      for (const g4::ExpectedTensor& t : g4::expected_text_tensors(m.text, native))
        bytes = g4::checked_add(bytes, g4::checked_nbytes(g4::checked_numel(t.shape, t.name), 8, t.name),
                                "total bytes");
    }
  } catch (const g4::Error& e) {
    std::fprintf(stderr, "sizes of an accepted config overflow: %s\n", e.what());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return g4::fuzz::check_parser([&] {
    check_sizes_of(g4::parse_config(g4::parse_json_strict(g4::fuzz::as_string(data, size), "config.json"),
                                    "config.json"));
  });
}
