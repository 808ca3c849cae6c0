// Mixed precision's two copies of the weights (train/compute_weights.h) and move_weights' dtype, on the host
// (the CPU converts to bf16 though it computes in f32), and the gemma-4-26b-a4b preset against the released
// config.
#include <gtest/gtest.h>

#include <cstring>

#include "core/dtype.h"
#include "io/config.h"
#include "model/weight_layout.h"
#include "test_paths.h"
#include "train/compute_weights.h"
#include "train/presets.h"

namespace g4 {
namespace {

std::uint16_t bf16_at(const Tensor& t, std::int64_t i) {
  std::uint16_t bits;
  std::memcpy(&bits, t.bytes() + 2 * i, 2);
  return bits;
}

TEST(ComputeWeights, Bf16CopiesRoundTheMastersAndTheRoutersStayShared) {
  Gemma4Model master = init_gemma4_model(preset_config("tiny-moe"), 7);
  ComputeWeights compute(master, DType::bf16);
  const Gemma4Model& c = compute.model();
  ASSERT_EQ(c.weights.embed_tokens.dtype(), DType::bf16);
  for (std::int64_t i = 0; i < 50; ++i)
    EXPECT_EQ(bf16_at(c.weights.embed_tokens, i), f32_to_bf16(master.weights.embed_tokens.f32()[i])) << i;
  const MoeWeights& moe = c.weights.layers[0].moe;
  EXPECT_EQ(moe.router_proj.dtype(), DType::f32);
  EXPECT_EQ(moe.router_proj.data(), master.weights.layers[0].moe.router_proj.data())
      << "the master's own tensor";
  EXPECT_EQ(moe.router_scale.data(), master.weights.layers[0].moe.router_scale.data());
  EXPECT_EQ(moe.gate_and_up.dtype(), DType::bf16);
  // An optimizer step changes the masters; refresh rounds them into the copies.
  master.weights.embed_tokens.f32()[3] =
      1.00390625f;  // halfway between two bf16 values: rounds to even (1.0)
  master.weights.layers[1].mlp_down.f32()[0] = -2.5f;
  compute.refresh();
  EXPECT_EQ(bf16_at(c.weights.embed_tokens, 3), f32_to_bf16(1.0f));
  EXPECT_EQ(bf16_at(c.weights.layers[1].mlp_down, 0), f32_to_bf16(-2.5f));
}

TEST(ComputeWeights, AnF32ModelComputesOnItsMasters) {
  const Gemma4Model master = init_gemma4_model(preset_config("tiny-moe"), 7);
  const ComputeWeights compute(master, DType::f32);
  EXPECT_EQ(&compute.model(), &master);
}

TEST(MoveWeights, Bf16KeepsTheRoutersF32) {
  Gemma4Model m = init_gemma4_model(preset_config("tiny-moe"), 7);
  move_weights(m.config, m.weights, host_allocator(), DType::bf16);
  EXPECT_EQ(m.weights.embed_tokens.dtype(), DType::bf16);
  EXPECT_EQ(m.weights.layers[0].mlp_gate.dtype(), DType::bf16);
  EXPECT_EQ(m.weights.layers[0].moe.router_proj.dtype(), DType::f32);
  EXPECT_EQ(m.weights.layers[0].moe.router_scale.dtype(), DType::f32);
  move_weights(m.config, m.weights, host_allocator(), DType::f32);  // and back, widened exactly
  EXPECT_EQ(m.weights.embed_tokens.dtype(), DType::f32);
}

TEST(Presets, Gemma4_26bA4bIsTheReleasedTextModel) {
  const TextConfig preset = parse_config(preset_config("gemma-4-26b-a4b"), "preset").text;
  const TextConfig released = load_config(test::source_path("tests/data/configs/gemma-4-26b-a4b.json")).text;
  EXPECT_EQ(count_parameters(preset).total, count_parameters(released).total);
  EXPECT_EQ(count_parameters(preset).active_per_token, count_parameters(released).active_per_token);
  ASSERT_EQ(preset.layers.size(), released.layers.size());
  for (std::size_t l = 0; l < preset.layers.size(); ++l) {
    const LayerSpec &a = preset.layers[l], &b = released.layers[l];
    EXPECT_EQ(a.attention, b.attention) << l;
    EXPECT_EQ(a.head_dim, b.head_dim) << l;
    EXPECT_EQ(a.num_q_heads, b.num_q_heads) << l;
    EXPECT_EQ(a.num_kv_heads, b.num_kv_heads) << l;
    EXPECT_EQ(a.window, b.window) << l;
    EXPECT_EQ(a.k_eq_v, b.k_eq_v) << l;
    EXPECT_EQ(a.moe, b.moe) << l;
  }
  EXPECT_EQ(preset.vocab_size, released.vocab_size);
  EXPECT_EQ(preset.final_logit_softcapping, released.final_logit_softcapping);
}

}  // namespace
}  // namespace g4
