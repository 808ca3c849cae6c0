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

}  // namespace g4
