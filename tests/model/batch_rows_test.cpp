// batch_rows (model/batch_rows.h): a data-parallel rank's block of batch rows, the remainder going to the
// first ranks; an out-of-range block is an error.
#include <gtest/gtest.h>

#include "core/error.h"
#include "model/batch_rows.h"

namespace g4 {
namespace {

TEST(BatchRows, ContiguousBlocksWithTheRemainderFirst) {
  // 5 rows over 2: (0,3), (3,2); over 4: (0,2), (2,1), (3,1), (4,1).
  EXPECT_EQ(row_block(5, 2, 0).count, 3);
  EXPECT_EQ(row_block(5, 2, 1).first, 3);
  EXPECT_EQ(row_block(5, 4, 1).first, 2);
  EXPECT_EQ(row_block(5, 4, 3).first, 4);
  EXPECT_EQ(row_block(5, 4, 3).count, 1);
  Batch b;
  b.batch_size = 3;
  b.seq_len = 2;
  b.input_ids = {1, 2, 3, 4, 5, 6};
  b.labels = {1, 2, 3, 4, 5, 6};
  b.position_ids = {0, 1, 0, 1, 0, 1};
  const Batch mid = batch_rows(b, {1, 2});
  EXPECT_EQ(mid.batch_size, 2);
  EXPECT_EQ(mid.input_ids, (std::vector<std::int64_t>{3, 4, 5, 6}));
  EXPECT_TRUE(mid.attention_mask.empty());
  EXPECT_THROW(batch_rows(b, {2, 2}), Error);
}

}  // namespace
}  // namespace g4
