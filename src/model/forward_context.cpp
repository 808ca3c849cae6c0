#include "model/forward_context.h"

#include "model/attention_mask.h"

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
    auto& masks = ctx.masks[s.attention];
    for (std::int64_t b = 0; b < batch.batch_size; ++b)
      masks.push_back(build_attention_mask(batch, b, s.window));
  }
  return ctx;
}

}  // namespace g4
