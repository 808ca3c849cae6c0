// byte_tokenizer.h: the byte-level tokenizer of the tiny presets: id = byte + 3, with Gemma's special ids
// <pad> 0, <eos> 1, <bos> 2. Every UTF-8 string round-trips exactly; vocabulary 259 (presets round it up).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace g4 {

struct ByteTokenizer {
  static constexpr std::int64_t pad_id = 0, eos_id = 1, bos_id = 2, offset = 3;
  static constexpr std::int64_t vocab_size = 259;

  std::vector<std::int64_t> encode(const std::string& text) const;  // no BOS/EOS added
  std::string decode(const std::vector<std::int64_t>& ids) const;   // specials are skipped
};

}  // namespace g4
