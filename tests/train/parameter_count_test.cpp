// Golden parameter counts of the released text models. The expected numbers are written out by hand from
// the shapes in shared/reference/hf_transformers_gemma4.md §1.2/§2 (not computed by the code under test).
#include <gtest/gtest.h>

#include "io/config.h"
#include "model/weight_layout.h"
#include "test_paths.h"

namespace g4 {
namespace {

ParameterCounts counts_of(const char* name) {
  return count_parameters(load_config(test::source_path(std::string("tests/data/configs/") + name)).text);
}

TEST(ParameterCounts, Gemma4_26B_A4B) {
  const std::int64_t H = 2816, V = 262144;
  const std::int64_t norms = 4 * H + 3 * H;  // 4 dense-path + 3 MoE-path norms
  const std::int64_t sliding_attn = (16 * 256 + 2 * 8 * 256) * H + H * 16 * 256 + 2 * 256;
  const std::int64_t full_attn = (16 * 512 + 2 * 512) * H + H * 16 * 512 + 2 * 512;  // k_eq_v: no v_proj
  const std::int64_t dense = 3 * 2112 * H;
  const std::int64_t router = 128 * H + H + 128;
  const std::int64_t experts = 128 * 3 * 704 * H;
  const std::int64_t layer_rest = norms + dense + router + experts;
  const std::int64_t total = V * H + H + 25 * (sliding_attn + layer_rest) + 5 * (full_attn + layer_rest);
  const ParameterCounts n = counts_of("gemma-4-26b-a4b.json");
  EXPECT_EQ(n.total, total);
  EXPECT_EQ(n.experts, 30 * experts);
  EXPECT_EQ(n.active_per_token, total - 30 * 120 * 3 * 704 * H);
  EXPECT_NEAR(n.total / 1e9, 25.2, 0.05);            // "about 25.2B total with embeddings"
  EXPECT_NEAR(n.active_per_token / 1e9, 3.8, 0.05);  // "about 3.8B active per token"
}

TEST(ParameterCounts, Gemma4_31B) {
  const std::int64_t H = 5376, V = 262144;
  const std::int64_t sliding_attn = (32 * 256 + 2 * 16 * 256) * H + H * 32 * 256 + 2 * 256;
  const std::int64_t full_attn = (32 * 512 + 4 * 512) * H + H * 32 * 512 + 2 * 512;
  const std::int64_t rest = 4 * H + 3 * 21504 * H;
  const std::int64_t total = V * H + H + 50 * (sliding_attn + rest) + 10 * (full_attn + rest);
  const ParameterCounts n = counts_of("gemma-4-31b.json");
  EXPECT_EQ(n.total, total);
  EXPECT_EQ(n.active_per_token, total);
  EXPECT_NEAR(n.total / 1e9, 30.7, 0.1);
}

TEST(ParameterCounts, Gemma4_E2B) {
  const std::int64_t H = 1536, V = 262144, P = 256, L = 35;
  const std::int64_t sliding_attn = (8 * 256 + 2 * 256) * H + H * 8 * 256 + 2 * 256;
  const std::int64_t full_attn = (8 * 512 + 2 * 512) * H + H * 8 * 512 + 2 * 512;
  const std::int64_t shared_sliding = 8 * 256 * H + H * 8 * 256 + 256;  // q, o, q_norm only
  const std::int64_t shared_full = 8 * 512 * H + H * 8 * 512 + 512;
  const std::int64_t rest = 4 * H + (P * H + H * P + H);  // norms + per-layer input
  const std::int64_t mlp = 3 * 6144 * H, wide = 3 * 12288 * H;
  // Layers 0-14: full at 4, 9, 14 (3 full, 12 sliding). Layers 15-34: full at 19, 24, 29, 34 (4 full, 16
  // sliding).
  const std::int64_t layers = 12 * (sliding_attn + mlp + rest) + 3 * (full_attn + mlp + rest) +
                              16 * (shared_sliding + wide + rest) + 4 * (shared_full + wide + rest);
  const std::int64_t model = V * H + V * L * P + L * P * H + P + H;
  const ParameterCounts n = counts_of("gemma-4-e2b.json");
  EXPECT_EQ(n.total, model + layers);
  EXPECT_EQ(n.per_layer_embeddings, V * L * P);
}

TEST(ParameterCounts, Gemma4_E4B) {
  const std::int64_t H = 2560, V = 262144, P = 256, L = 42;
  const std::int64_t sliding_attn = (8 * 256 + 2 * 2 * 256) * H + H * 8 * 256 + 2 * 256;
  const std::int64_t full_attn = (8 * 512 + 2 * 2 * 512) * H + H * 8 * 512 + 2 * 512;
  const std::int64_t shared_sliding = 8 * 256 * H + H * 8 * 256 + 256;
  const std::int64_t shared_full = 8 * 512 * H + H * 8 * 512 + 512;
  const std::int64_t rest = 4 * H + (P * H + H * P + H) + 3 * 10240 * H;
  // Layers 0-23: full at 5, 11, 17, 23 (4 full, 20 sliding). Layers 24-41: full at 29, 35, 41 (3 full, 15
  // sliding).
  const std::int64_t layers = 20 * (sliding_attn + rest) + 4 * (full_attn + rest) +
                              15 * (shared_sliding + rest) + 3 * (shared_full + rest);
  const std::int64_t model = V * H + V * L * P + L * P * H + P + H;
  EXPECT_EQ(counts_of("gemma-4-e4b.json").total, model + layers);
}

}  // namespace
}  // namespace g4
