#include "data/tokenizer.h"

#include <filesystem>

#include "core/error.h"
#include "data/bpe_tokenizer.h"
#include "data/byte_tokenizer.h"

namespace g4 {

Tokenizer byte_level_tokenizer() {
  Tokenizer c;
  c.kind = "byte";
  c.encode = [](const std::string& s) { return ByteTokenizer{}.encode(s); };
  c.decode = [](const std::vector<std::int64_t>& ids) { return ByteTokenizer{}.decode(ids); };
  c.bos = ByteTokenizer::bos_id;
  c.eos = ByteTokenizer::eos_id;
  c.pad = ByteTokenizer::pad_id;
  c.vocab_size = ByteTokenizer::vocab_size;
  return c;
}

Tokenizer tokenizer_from_json(const std::string& path) {
  auto tok = std::make_shared<BpeTokenizer>(BpeTokenizer::load(path));
  Tokenizer c;
  c.kind = "tokenizer.json";
  c.encode = [tok](const std::string& s) { return tok->encode(s); };
  c.decode = [tok](const std::vector<std::int64_t>& ids) { return tok->decode(ids); };
  c.vocab_size = tok->vocab_size();
  const auto id = [&](const char* name, std::int64_t fallback) {
    const std::int64_t i = tok->token_id(name);
    return i >= 0 ? i : fallback;
  };
  c.bos = id("<bos>", 2);
  c.eos = id("<eos>", 1);
  c.pad = id("<pad>", 0);
  return c;
}

Tokenizer tokenizer_for_model_dir(const std::string& dir) {
  const std::string path = dir + "/tokenizer.json";
  return std::filesystem::exists(path) ? tokenizer_from_json(path) : byte_level_tokenizer();
}

}  // namespace g4
