// Token permutation for the grouped GEMM (the note's §4.3).
#include "ops/cpu/moe_permute.h"

#include <gtest/gtest.h>

#include <numeric>

namespace g4 {
namespace {

TEST(TokenPermutation, EverySlotOfALocalExpertIsAssignedInStableExpertMajorOrder) {
  // 4 tokens, top-2, 3 experts all local.
  const std::int64_t idx[8] = {2, 0, 1, 2, 0, 1, 2, 0};
  TokenPermutation p;
  moe_permute(idx, nullptr, 4, 2, 3, 0, &p);
  EXPECT_EQ(p.sorted_slot_ids, (std::vector<std::int64_t>{1, 4, 7, 2, 5, 0, 3, 6}));
  EXPECT_EQ(p.sorted_token_ids, (std::vector<std::int64_t>{0, 2, 3, 1, 2, 0, 1, 3}));
  EXPECT_EQ(p.tokens_per_expert, (std::vector<std::int64_t>{3, 2, 3}));
  EXPECT_EQ(p.end_offsets, (std::vector<std::int32_t>{3, 5, 8}));
}

TEST(TokenPermutation, OffsetsAreTheInt32CumulativeSumOfTokensPerExpert) {
  std::vector<std::int64_t> idx(50 * 4);
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<std::int64_t>((i * 7 + i / 3) % 9);
  TokenPermutation p;
  moe_permute(idx.data(), nullptr, 50, 4, 9, 0, &p);
  std::int64_t run = 0;
  for (std::int64_t e = 0; e < 9; ++e) {
    run += p.tokens_per_expert[e];
    EXPECT_EQ(p.end_offsets[e], run);
  }
  EXPECT_EQ(p.rows(), 200);
  static_assert(std::is_same_v<decltype(p.end_offsets)::value_type, std::int32_t>);
}

TEST(TokenPermutation, KeepsOnlyTheLocalExpertRangeAndRenumbersIt) {
  const std::int64_t idx[6] = {0, 3, 4, 5, 2, 3};  // experts 3..4 are local (start 3, n_local 2)
  TokenPermutation p;
  moe_permute(idx, nullptr, 3, 2, 2, 3, &p);
  EXPECT_EQ(p.sorted_slot_ids, (std::vector<std::int64_t>{1, 5, 2}));
  EXPECT_EQ(p.tokens_per_expert, (std::vector<std::int64_t>{2, 1}));
  EXPECT_EQ(p.end_offsets, (std::vector<std::int32_t>{2, 3}));
}

TEST(TokenPermutation, MaskedTokensAndNegativeIndicesAreNeverRouted) {
  const std::int64_t idx[6] = {0, 1, 1, 0, -1, 1};
  const std::uint8_t mask[3] = {1, 0, 1};
  TokenPermutation p;
  moe_permute(idx, mask, 3, 2, 2, 0, &p);
  EXPECT_EQ(p.sorted_slot_ids, (std::vector<std::int64_t>{0, 1, 5}));
  EXPECT_EQ(p.tokens_per_expert, (std::vector<std::int64_t>{1, 2}));
}

TEST(TokenPermutation, NoLocalTokensGiveAnEmptyPermutationWithZeroOffsets) {
  const std::int64_t idx[4] = {0, 1, 1, 0};
  TokenPermutation p;
  moe_permute(idx, nullptr, 2, 2, 2, 2, &p);
  EXPECT_EQ(p.rows(), 0);
  EXPECT_EQ(p.end_offsets, (std::vector<std::int32_t>{0, 0}));
  const std::uint8_t none[2] = {0, 0};
  moe_permute(idx, none, 2, 2, 2, 0, &p);
  EXPECT_EQ(p.rows(), 0);
}

TEST(TokenPermutation, SortedWeightsFollowTheSlots) {
  const std::int64_t idx[4] = {1, 0, 0, 1};
  const float w[4] = {0.7f, 0.3f, 0.6f, 0.4f};
  TokenPermutation p;
  moe_permute(idx, nullptr, 2, 2, 2, 0, &p);
  std::vector<float> sorted(4);
  gather_sorted_weights(p, w, sorted.data());
  EXPECT_EQ(sorted, (std::vector<float>{0.3f, 0.6f, 0.7f, 0.4f}));
}

}  // namespace
}  // namespace g4
