#include "ops/attention_visibility.h"

#include <algorithm>

namespace g4 {

RowBounds visible_row_bounds(const AttentionVisibility& v) {
  const std::int64_t Sq = v.queries, Sk = v.keys;
  RowBounds r{std::vector<std::int64_t>(static_cast<std::size_t>(Sq), Sk),
              std::vector<std::int64_t>(static_cast<std::size_t>(Sq), -1), v.key_mask};
  std::vector<std::int64_t> segment_start, segment_end;  // per key position: its segment's first and last
  if (v.segment) {
    segment_start.resize(static_cast<std::size_t>(Sk));
    segment_end.resize(static_cast<std::size_t>(Sk));
    for (std::int64_t j = 0; j < Sk; ++j)
      segment_start[j] = j > 0 && v.segment[j] == v.segment[j - 1] ? segment_start[j - 1] : j;
    for (std::int64_t j = Sk - 1; j >= 0; --j)
      segment_end[j] = j + 1 < Sk && v.segment[j] == v.segment[j + 1] ? segment_end[j + 1] : j;
  }
  for (std::int64_t i = 0; i < Sq; ++i) {
    const std::int64_t p = v.query_offset + i;
    std::int64_t first = v.window > 0 ? std::max<std::int64_t>(0, p - v.window + 1) : 0;
    std::int64_t last = v.causal ? p : (v.segment ? segment_end[p] : Sk - 1);
    if (v.block_end) last = std::max(last, v.block_end[p]);
    if (v.segment) first = std::max(first, segment_start[p]);
    if (v.key_mask) {
      while (first <= last && !v.key_mask[first]) ++first;
      while (last >= first && !v.key_mask[last]) --last;
    }
    if (first > last) continue;
    r.first[i] = first;
    r.last[i] = last;
  }
  return r;
}

}  // namespace g4
