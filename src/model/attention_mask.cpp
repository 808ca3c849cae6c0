#include "model/attention_mask.h"

namespace g4 {

std::vector<std::uint8_t> build_attention_mask(const Batch& batch, std::int64_t row, int window) {
  const std::int64_t S = batch.seq_len;
  std::vector<std::int64_t> segment(S, 0);
  const bool packed = batch.attention_mask.empty() && batch.explicit_position_ids;
  if (packed) {
    const std::int64_t* pos = &batch.position_ids[row * S];
    for (std::int64_t t = 1; t < S; ++t) segment[t] = segment[t - 1] + (pos[t] - pos[t - 1] != 1 ? 1 : 0);
  }
  std::vector<std::uint8_t> mask(static_cast<std::size_t>(S * S), 0);
  for (std::int64_t i = 0; i < S; ++i) {
    for (std::int64_t j = 0; j <= i; ++j) {
      if (window > 0 && j <= i - window) continue;
      if (!batch.attention_mask.empty() && !batch.attention_mask[row * S + j]) continue;
      if (segment[i] != segment[j]) continue;
      mask[i * S + j] = 1;
    }
  }
  return mask;
}

}  // namespace g4
