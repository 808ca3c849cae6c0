// batch.h: one batch of token rows as data/ produces it and the model consumes it.
//
// Invariants: every per-token array has B·S entries, row-major [B, S]; input ids lie in [0, vocab);
// labels are ids in [0, vocab) or -100; attention_mask (when present) holds 0/1 and masks keys only;
// position_ids are non-negative. Without explicit position ids, positions are 0..S-1 in every row.
#pragma once

#include <cstdint>
#include <vector>

namespace g4 {

struct Batch {
  std::int64_t batch_size = 0;  // B
  std::int64_t seq_len = 0;     // S
  std::vector<std::int64_t> input_ids;
  std::vector<std::int64_t> labels;
  std::vector<std::int64_t> position_ids;    // always filled (arange when not given)
  std::vector<std::uint8_t> attention_mask;  // empty when not given
  bool explicit_position_ids = false;
  // Multimodal rows: 1 where an image's soft token goes (the <|image|> placeholders), 0 for text; empty for
  // text-only batches. The model takes those positions' embeddings from the image soft tokens it is given.
  std::vector<std::uint8_t> mm_token_type;

  std::int64_t tokens() const { return batch_size * seq_len; }
};

// Calls f(first, count) for every run of consecutive image placeholders (mm_token_type), in order.
template <class F>
void for_each_image_run(const Batch& batch, F f) {
  const std::int64_t T = batch.mm_token_type.empty() ? 0 : batch.tokens();
  for (std::int64_t t = 0; t < T;) {
    if (!batch.mm_token_type[static_cast<std::size_t>(t)]) {
      ++t;
      continue;
    }
    std::int64_t n = 1;
    while (t + n < T && batch.mm_token_type[static_cast<std::size_t>(t + n)]) ++n;
    f(t, n);
    t += n;
  }
}

}  // namespace g4
