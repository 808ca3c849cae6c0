// tokenizer.h: the tokenizer a run uses, behind one small interface: the checkpoint's tokenizer.json (BPE,
// bpe_tokenizer.h) when the model directory has one, else the byte tokenizer of the tiny presets.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace g4 {

struct Tokenizer {
  std::string kind;  // "byte" or "tokenizer.json"
  std::function<std::vector<std::int64_t>(const std::string&)> encode;
  std::function<std::string(const std::vector<std::int64_t>&)> decode;
  std::int64_t bos = 2, eos = 1, pad = 0;
  std::int64_t vocab_size = 0;
};

Tokenizer byte_level_tokenizer();
Tokenizer tokenizer_from_json(const std::string& tokenizer_json);
// tokenizer.json in `dir` if present, else the byte tokenizer.
Tokenizer tokenizer_for_model_dir(const std::string& dir);

}  // namespace g4
