// bpe_tokenizer.h: the Gemma tokenizer from a checkpoint's tokenizer.json (Hugging Face `tokenizers` format):
// BPE with byte fallback over the whole normalised text (no pre-tokenizer), a normaliser that replaces " " by
// "▁", added (special) tokens matched literally before normalisation, and the decoder ▁→" ", byte fallback,
// fuse. Invariant: encode() gives the ids transformers' fast tokenizer gives (tests/data/tokenizer), and
// decode(encode(s)) == s for every UTF-8 string. Anything else in tokenizer.json (another model type,
// normaliser or pre-tokenizer) is a clear error rather than a silently different tokenisation.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

namespace g4 {

class BpeTokenizer {
 public:
  static BpeTokenizer load(const std::string& tokenizer_json_path);

  std::vector<std::int64_t> encode(const std::string& text) const;  // no BOS/EOS added
  std::string decode(const std::vector<std::int64_t>& ids) const;  // special tokens included, as HF's default
  std::int64_t vocab_size() const { return static_cast<std::int64_t>(id_to_token_.size()); }
  std::int64_t token_id(const std::string& token) const;  // -1 if absent

 private:
  void encode_segment(const std::string& text, std::vector<std::int64_t>& out) const;

  std::unordered_map<std::string, std::int64_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::map<std::pair<std::int64_t, std::int64_t>, std::pair<std::int64_t, std::int64_t>>
      merges_;                                               // → (rank, id)
  std::vector<std::pair<std::string, std::int64_t>> added_;  // literal tokens, longest first
  std::int64_t unk_id_ = -1;
  bool byte_fallback_ = false;
  std::int64_t byte_ids_[256];
};

}  // namespace g4
