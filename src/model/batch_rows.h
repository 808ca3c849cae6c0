// batch_rows.h: a block of a batch's rows, for data parallelism (each DP rank takes a contiguous block; with
// B = q·n + r rows over n parts, parts < r take q+1 rows).
#pragma once

#include <cstdint>

#include "core/batch.h"

namespace g4 {

struct RowBlock {
  std::int64_t first = 0;
  std::int64_t count = 0;
};
RowBlock row_block(std::int64_t rows, std::int64_t parts, std::int64_t part);

// Rows [first, first + count) of `batch` (every per-token array sliced alike).
Batch batch_rows(const Batch& batch, RowBlock rows);

}  // namespace g4
