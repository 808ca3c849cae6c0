#include "model/forward_context.h"

namespace g4 {

ForwardContext make_forward_context(const TextConfig& config, const Batch& batch) {
  ForwardContext ctx;
  ctx.config = &config;
  ctx.batch = &batch;
  for (const LayerSpec& s : config.layers) {
    if (ctx.rope.count(s.attention)) continue;
    ctx.rope[s.attention] =
        rope_table(rope_inv_freq({s.rope.theta, s.rope.head_dim, s.rope.rotated_pairs, s.rope.factor}),
                   batch.position_ids.data(), batch.tokens());
  }
  const std::int64_t S = batch.seq_len;
  if (batch.attention_mask.empty() && batch.explicit_position_ids) {
    for (std::int64_t b = 0; b < batch.batch_size; ++b) {
      const std::int64_t* pos = &batch.position_ids[b * S];
      std::vector<std::int64_t> segment(static_cast<std::size_t>(S), 0);
      for (std::int64_t t = 1; t < S; ++t) segment[t] = segment[t - 1] + (pos[t] - pos[t - 1] != 1 ? 1 : 0);
      ctx.segments.push_back(std::move(segment));
    }
  }
  if (!batch.mm_token_type.empty() && config.use_bidirectional_attention == "vision") {
    for (std::int64_t b = 0; b < batch.batch_size; ++b) {
      const std::uint8_t* mm = &batch.mm_token_type[b * S];
      std::vector<std::int64_t> end(static_cast<std::size_t>(S), -1);
      for (std::int64_t t = S - 1; t >= 0; --t)
        if (mm[t]) end[t] = t + 1 < S && mm[t + 1] ? end[t + 1] : t;
      ctx.image_block_end.push_back(std::move(end));
    }
  }
  return ctx;
}

std::vector<AttentionVisibility> attention_rows(const ForwardContext& ctx, int window) {
  const Batch& batch = *ctx.batch;
  std::vector<AttentionVisibility> rows(static_cast<std::size_t>(batch.batch_size));
  for (std::int64_t row = 0; row < batch.batch_size; ++row) {
    AttentionVisibility& v = rows[row];
    v.queries = v.keys = batch.seq_len;
    v.window = window;
    if (!ctx.segments.empty()) v.segment = ctx.segments[row].data();
    if (!batch.attention_mask.empty()) v.key_mask = &batch.attention_mask[row * batch.seq_len];
    if (window > 0 && !ctx.image_block_end.empty()) v.block_end = ctx.image_block_end[row].data();
  }
  return rows;
}

}  // namespace g4
