#include "data/byte_tokenizer.h"

namespace g4 {

std::vector<std::int64_t> ByteTokenizer::encode(const std::string& text) const {
  std::vector<std::int64_t> ids;
  ids.reserve(text.size());
  for (unsigned char c : text) ids.push_back(static_cast<std::int64_t>(c) + offset);
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<std::int64_t>& ids) const {
  std::string text;
  for (std::int64_t id : ids)
    if (id >= offset && id < offset + 256) text.push_back(static_cast<char>(id - offset));
  return text;
}

}  // namespace g4
