// Megatron permute / unpermute (the note's §6.5–6.6).
#include "moe/megatron_permute.h"

#include <gtest/gtest.h>

#include "ops/moe_test_util.h"

namespace g4 {
namespace {

// 4 tokens (H = 1, value = token id + 1), 3 experts.
const std::uint8_t kMap[12] = {1, 0, 1,   // token 0 → experts 0, 2
                               0, 1, 1,   // token 1 → experts 1, 2
                               1, 0, 0,   // token 2 → expert 0
                               0, 0, 1};  // token 3 → expert 2
const double kTokens[4] = {1, 2, 3, 4};
const double kProbs[12] = {0.6, 0, 0.4, 0, 0.7, 0.3, 1.0, 0, 0, 0, 0, 1.0};

TEST(MegatronPermute, RowsAreExpertMajorWithAscendingTokensAndProbsFollow) {
  std::vector<double> permuted, probs;
  std::vector<std::int64_t> sorted;
  const auto rows = megatron_permute<double>(kTokens, 4, 1, kMap, 3, kProbs, {}, &permuted, &probs, &sorted);
  EXPECT_EQ(rows, 6);
  EXPECT_EQ(sorted, (std::vector<std::int64_t>{0, 2, 1, 0, 1, 3}));
  EXPECT_EQ(permuted, (std::vector<double>{1, 3, 2, 1, 2, 4}));
  EXPECT_EQ(probs, (std::vector<double>{0.6, 1.0, 0.7, 0.4, 0.3, 1.0}));
}

TEST(MegatronPermute, UnpermuteSumsEveryExpertCopyWeightedByItsProb) {
  std::vector<double> permuted, probs;
  std::vector<std::int64_t> sorted;
  megatron_permute<double>(kTokens, 4, 1, kMap, 3, kProbs, {}, &permuted, &probs, &sorted);
  double out[4];
  megatron_unpermute<double>(permuted.data(), sorted.data(), 6, 4, 1, kProbs, kMap, 3, {}, out);
  EXPECT_DOUBLE_EQ(out[0], 1 * 0.6 + 1 * 0.4);
  EXPECT_DOUBLE_EQ(out[1], 2 * 0.7 + 2 * 0.3);
  EXPECT_DOUBLE_EQ(out[2], 3.0);
  EXPECT_DOUBLE_EQ(out[3], 4.0);
  megatron_unpermute<double>(permuted.data(), sorted.data(), 6, 4, 1, nullptr, nullptr, 3, {}, out);
  EXPECT_EQ(out[0], 2.0);  // two copies summed
  EXPECT_EQ(out[2], 3.0);
}

TEST(MegatronPermute, DropAndPadGivesEveryExpertExactlyCapacityRows) {
  MegatronPermuteOptions o;
  o.drop_and_pad = true;
  o.num_out_tokens = 6;  // capacity 2
  std::vector<double> permuted, probs;
  std::vector<std::int64_t> sorted;
  const auto rows = megatron_permute<double>(kTokens, 4, 1, kMap, 3, kProbs, o, &permuted, &probs, &sorted);
  EXPECT_EQ(rows, 6);
  // expert 0: routed {0, 2}; expert 1: routed {1} + padding token 0; expert 2: routed {0, 1, 3} → 3 dropped.
  EXPECT_EQ(sorted, (std::vector<std::int64_t>{0, 2, 1, 0, 0, 1}));
  EXPECT_EQ(probs, (std::vector<double>{0.6, 1.0, 0.7, 0.0, 0.4, 0.3}));
  double out[4];
  megatron_unpermute<double>(permuted.data(), sorted.data(), rows, 4, 1, kProbs, kMap, 3, o, out);
  EXPECT_DOUBLE_EQ(out[0], 1 * 0.6 + 1 * 0.0 + 1 * 0.4);  // the padding copy has prob 0
  EXPECT_DOUBLE_EQ(out[3], 0.0);                          // dropped
}

TEST(MegatronPermute, UnpermuteWithoutProbsIsTheTransposeOfPermute) {
  const std::int64_t N = 7, H = 3, E = 4;
  std::vector<std::uint8_t> map(N * E);
  for (std::int64_t i = 0; i < N * E; ++i) map[i] = (i * 5 + i / 3) % 3 == 0;
  const auto x = test::random_vector<double>(N * H, 1);
  std::vector<double> permuted;
  std::vector<std::int64_t> sorted;
  const auto rows =
      megatron_permute<double>(x.data(), N, H, map.data(), E, nullptr, {}, &permuted, nullptr, &sorted);
  const auto y = test::random_vector<double>(rows * H, 2);
  std::vector<double> back(N * H);
  megatron_unpermute<double>(y.data(), sorted.data(), rows, N, H, nullptr, nullptr, E, {}, back.data());
  EXPECT_GT(rows, 0);
  EXPECT_NEAR(test::dot(permuted, y), test::dot(x, back), 1e-12);
}

TEST(MegatronPermute, UnpermuteBackwardMatchesFiniteDifferencesForRowsAndProbs) {
  for (bool drop : {false, true}) {
    MegatronPermuteOptions o;
    o.drop_and_pad = drop;
    o.num_out_tokens = 6;
    const std::int64_t N = 4, H = 2, E = 3;
    std::vector<double> tokens = test::random_vector<double>(N * H, 3);
    std::vector<double> probs(kProbs, kProbs + 12);
    std::vector<double> permuted, pp;
    std::vector<std::int64_t> sorted;
    const auto rows =
        megatron_permute<double>(tokens.data(), N, H, kMap, E, probs.data(), o, &permuted, &pp, &sorted);
    const auto dout = test::random_vector<double>(N * H, 4);
    std::vector<double> d_perm(rows * H), d_probs(N * E, 0.0);
    megatron_unpermute_backward<double>(dout.data(), permuted.data(), sorted.data(), rows, N, H, probs.data(),
                                        kMap, E, o, d_perm.data(), d_probs.data());
    std::vector<double> out(N * H);
    auto loss = [&] {
      megatron_unpermute<double>(permuted.data(), sorted.data(), rows, N, H, probs.data(), kMap, E, o,
                                 out.data());
      return test::dot(out, dout);
    };
    EXPECT_LE(test::tolerance_ratio(d_perm, test::numeric_gradient(permuted, loss), 1e-9, 1e-7), 1.0);
    EXPECT_LE(test::tolerance_ratio(d_probs, test::numeric_gradient(probs, loss), 1e-9, 1e-7), 1.0);
  }
}

TEST(IndicesToMultihot, MinusOneIsIgnoredAndProbsLandAtTheirExperts) {
  const std::int64_t idx[6] = {2, 0, -1, 1, -1, -1};  // token 1 partial, token 2 all −1
  const float probs[6] = {0.7f, 0.3f, 0.5f, 0.5f, 0.9f, 0.1f};
  std::uint8_t map[9];
  float mp[9];
  indices_to_multihot(idx, probs, 3, 2, 3, map, mp);
  EXPECT_EQ(std::vector<std::uint8_t>(map, map + 9), (std::vector<std::uint8_t>{1, 0, 1, 0, 1, 0, 0, 0, 0}));
  EXPECT_EQ(std::vector<float>(mp, mp + 9), (std::vector<float>{0.3f, 0, 0.7f, 0, 0.5f, 0, 0, 0, 0}));
  const float dmp[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  float dk[6];
  indices_to_multihot_backward(idx, dmp, 3, 2, 3, dk);
  EXPECT_EQ(std::vector<float>(dk, dk + 6), (std::vector<float>{3, 1, 0, 5, 0, 0}));
}

TEST(IndicesToMultihot, TopOneRoutingGivesOneHotRows) {
  const std::int64_t idx[3] = {1, 0, 2};
  const double probs[3] = {1, 1, 1};
  std::uint8_t map[9];
  double mp[9];
  indices_to_multihot(idx, probs, 3, 1, 3, map, mp);
  for (int t = 0; t < 3; ++t) {
    int ones = 0;
    for (int e = 0; e < 3; ++e) ones += map[t * 3 + e];
    EXPECT_EQ(ones, 1);
    EXPECT_EQ(map[t * 3 + idx[t]], 1);
  }
}

}  // namespace
}  // namespace g4
