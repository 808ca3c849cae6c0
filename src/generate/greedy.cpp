#include "generate/greedy.h"

#include <algorithm>

namespace g4 {

std::vector<std::int64_t> greedy_generate(const Gemma4Model& model, const std::vector<std::int64_t>& prompt,
                                          std::int64_t max_new, std::int64_t stop_id) {
  std::vector<std::int64_t> ids = prompt, generated;
  const std::int64_t V = model.config.text.vocab_size;
  for (std::int64_t i = 0; i < max_new; ++i) {
    Batch b;
    b.batch_size = 1;
    b.seq_len = static_cast<std::int64_t>(ids.size());
    b.input_ids = ids;
    b.labels = ids;
    for (std::int64_t t = 0; t < b.seq_len; ++t) b.position_ids.push_back(t);
    const ForwardResult out = gemma4_forward(model, b);
    const float* last = out.logits.f32() + (b.seq_len - 1) * V;
    const std::int64_t next = std::max_element(last, last + V) - last;
    ids.push_back(next);
    generated.push_back(next);
    if (next == stop_id) break;
  }
  return generated;
}

}  // namespace g4
