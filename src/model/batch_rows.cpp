#include "model/batch_rows.h"

#include "core/error.h"

namespace g4 {

RowBlock row_block(std::int64_t rows, std::int64_t parts, std::int64_t part) {
  check(parts > 0 && part >= 0 && part < parts, "row block ", part, " of ", parts);
  const std::int64_t q = rows / parts, r = rows % parts;
  return part < r ? RowBlock{part * (q + 1), q + 1} : RowBlock{r * (q + 1) + (part - r) * q, q};
}

namespace {

template <class V>
V slice(const V& v, std::int64_t seq, RowBlock rows) {
  if (v.empty()) return v;
  return V(v.begin() + rows.first * seq, v.begin() + (rows.first + rows.count) * seq);
}

}  // namespace

Batch batch_rows(const Batch& b, RowBlock rows) {
  check(rows.first >= 0 && rows.count >= 0 && rows.first + rows.count <= b.batch_size, "rows [", rows.first,
        ", ", rows.first + rows.count, ") outside a batch of ", b.batch_size);
  Batch out;
  out.batch_size = rows.count;
  out.seq_len = b.seq_len;
  out.input_ids = slice(b.input_ids, b.seq_len, rows);
  out.labels = slice(b.labels, b.seq_len, rows);
  out.position_ids = slice(b.position_ids, b.seq_len, rows);
  out.attention_mask = slice(b.attention_mask, b.seq_len, rows);
  out.explicit_position_ids = b.explicit_position_ids;
  return out;
}

}  // namespace g4
