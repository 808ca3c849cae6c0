// The Gemma 4 MoE state-dict adapter (the note's §5): key mapping, transposes, the per_expert_scale fold,
// error cases, round trips, expert-parallel slicing and gathering, streaming conversion and the gradient
// mapping.
#include "moe/state_dict_adapter.h"

#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"
#include "io/checkpoint.h"
#include "ops/moe_test_util.h"
#include "test_paths.h"

namespace g4 {
namespace {

constexpr std::int64_t E = 4, H = 6, I = 3;

Tensor random_tensor(Shape shape, std::uint32_t seed, DType dtype = DType::f32) {
  const auto v = test::random_vector<float>(static_cast<std::size_t>(shape_numel(shape)), seed);
  Tensor t = Tensor::from_floats(shape, v);
  return dtype == DType::f32 ? t : t.to_dtype(dtype);
}

StateDict hf_layer(const std::string& p, std::vector<float> scale, DType dtype = DType::f32) {
  StateDict sd;
  sd[p + ".router.proj.weight"] = random_tensor({E, H}, 1, dtype);
  sd[p + ".router.scale"] = random_tensor({H}, 2, dtype);
  sd[p + ".router.per_expert_scale"] = Tensor::from_floats({E}, scale);
  if (dtype != DType::f32)
    sd[p + ".router.per_expert_scale"] = sd[p + ".router.per_expert_scale"].to_dtype(dtype);
  sd[p + ".experts.gate_up_proj"] = random_tensor({E, 2 * I, H}, 3, dtype);
  sd[p + ".experts.down_proj"] = random_tensor({E, H, I}, 4, dtype);
  sd[p + ".mlp.down_proj.weight"] = random_tensor({H, 5}, 5, dtype);
  return sd;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.bytes(), b.bytes(), a.nbytes()) == 0;
}

const std::string P = "model.language_model.layers.0";

TEST(StateDictAdapter, FromHfRenamesTheRouterTransposesExpertsAndFoldsPerExpertScaleIntoDown) {
  StateDict hf = hf_layer(P, {2.0f, 1.0f, 0.5f, 3.0f});
  const StateDict n = gemma4_moe_from_hf(hf);
  EXPECT_EQ(n.size(), 5u);
  for (const auto& [name, t] : n) EXPECT_EQ(name.find(".router."), std::string::npos) << name;
  EXPECT_TRUE(same_bytes(n.at(P + ".moe.gate.proj.weight"), hf.at(P + ".router.proj.weight")));
  EXPECT_TRUE(same_bytes(n.at(P + ".moe.gate.scale"), hf.at(P + ".router.scale")));
  EXPECT_TRUE(same_bytes(n.at(P + ".mlp.down_proj.weight"), hf.at(P + ".mlp.down_proj.weight")));
  const Tensor& gu = n.at(P + ".moe.experts.gate_and_up_projs");
  const Tensor& dn = n.at(P + ".moe.experts.down_projs");
  ASSERT_EQ(gu.shape(), (Shape{E, H, 2 * I}));
  ASSERT_EQ(dn.shape(), (Shape{E, I, H}));
  const float* hgu = hf.at(P + ".experts.gate_up_proj").f32();
  const float* hdn = hf.at(P + ".experts.down_proj").f32();
  const float s[E] = {2.0f, 1.0f, 0.5f, 3.0f};
  for (std::int64_t e = 0; e < E; ++e)
    for (std::int64_t h = 0; h < H; ++h) {
      for (std::int64_t j = 0; j < 2 * I; ++j)
        EXPECT_EQ(gu.f32()[(e * H + h) * 2 * I + j], hgu[(e * 2 * I + j) * H + h]);
      for (std::int64_t i = 0; i < I; ++i)
        EXPECT_EQ(dn.f32()[(e * I + i) * H + h], hdn[(e * H + h) * I + i] * s[e]);
    }
}

TEST(StateDictAdapter, AcceptsTheOlderMoeKeyFormAndNamesWithoutTheModelPrefix) {
  StateDict hf;
  hf["layers.2.router.proj.weight"] = random_tensor({E, H}, 1);
  hf["layers.2.router.scale"] = random_tensor({H}, 2);
  hf["layers.2.moe.per_expert_scale"] = Tensor::from_floats({E}, {1, 1, 1, 2});
  hf["layers.2.moe.gate_up_proj"] = random_tensor({E, 2 * I, H}, 3);
  hf["layers.2.moe.down_proj"] = random_tensor({E, H, I}, 4);
  const StateDict n = gemma4_moe_from_hf(hf);
  EXPECT_TRUE(n.count("layers.2.moe.experts.gate_and_up_projs"));
  EXPECT_TRUE(n.count("layers.2.moe.experts.down_projs"));
  EXPECT_TRUE(n.count("layers.2.moe.gate.proj.weight"));
  EXPECT_EQ(n.at("layers.2.moe.experts.down_projs").f32()[3 * I * H],
            2 * hf["layers.2.moe.down_proj"].f32()[3 * H * I]);
}

TEST(StateDictAdapter, IncompleteExpertWeightsAreAClearError) {
  StateDict hf = hf_layer(P, {1, 1, 1, 1});
  hf.erase(P + ".experts.down_proj");
  try {
    gemma4_moe_from_hf(hf);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("incomplete expert weights in " + P), std::string::npos) << e.what();
  }
  StateDict only_scale;
  only_scale[P + ".router.per_expert_scale"] = Tensor::from_floats({E}, {1, 1, 1, 1});
  EXPECT_THROW(gemma4_moe_from_hf(only_scale), Error);
}

TEST(StateDictAdapter, MismatchedExpertShapesAreAClearError) {
  StateDict hf = hf_layer(P, {1, 1, 1, 1});
  hf[P + ".experts.down_proj"] = random_tensor({E, H, I + 1}, 9);
  EXPECT_THROW(gemma4_moe_from_hf(hf), Error);
}

TEST(StateDictAdapter, AMissingPerExpertScaleMeansOnesAndTheLogSaysSo) {
  StateDict hf = hf_layer(P, {1, 1, 1, 1});
  hf.erase(P + ".router.per_expert_scale");
  std::vector<std::string> lines;
  AdapterOptions o;
  o.log = [&](const std::string& l) { lines.push_back(l); };
  const StateDict n = gemma4_moe_from_hf(hf, o);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("per_expert_scale"), std::string::npos);
  EXPECT_NE(lines[0].find(P), std::string::npos);
  const Tensor back =
      convert_single_tensor_to_hf(P + ".moe.experts.down_projs", n.at(P + ".moe.experts.down_projs"))[0]
          .second;
  EXPECT_TRUE(same_bytes(back, hf.at(P + ".experts.down_proj")));
}

TEST(StateDictAdapter, ToHfInvertsFromHfBitExactlyWithUnitScalesInEveryDtype) {
  for (DType dt : {DType::f32, DType::bf16, DType::f64}) {
    const StateDict hf = hf_layer(P, {1, 1, 1, 1}, dt);
    const StateDict back = gemma4_moe_to_hf(gemma4_moe_from_hf(hf));
    ASSERT_EQ(back.size(), hf.size());
    for (const auto& [name, t] : hf)
      EXPECT_TRUE(same_bytes(back.at(name), t)) << name << " " << dtype_name(dt);
  }
}

TEST(StateDictAdapter, TheFoldInBf16MultipliesInFloatAndRoundsOnceToBf16) {
  const StateDict hf = hf_layer(P, {2.5f, 1.0f, 0.3f, 3.0f}, DType::bf16);
  const StateDict n = gemma4_moe_from_hf(hf);
  const Tensor& dn = n.at(P + ".moe.experts.down_projs");
  ASSERT_EQ(dn.dtype(), DType::bf16);
  const Tensor hd = hf.at(P + ".experts.down_proj").to_f32();
  const Tensor sc = hf.at(P + ".router.per_expert_scale").to_f32();
  const Tensor got = dn.to_f32();
  for (std::int64_t e = 0; e < E; ++e)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t i = 0; i < I; ++i)
        EXPECT_EQ(got.f32()[(e * I + i) * H + h], round_to_bf16(hd.f32()[(e * H + h) * I + i] * sc.f32()[e]));
}

TEST(StateDictAdapter, ToHfWritesOnesForPerExpertScaleAndKeepsTheFoldedDown) {
  const StateDict hf = hf_layer(P, {2.0f, 1.0f, 0.5f, 3.0f});
  const StateDict back = gemma4_moe_to_hf(gemma4_moe_from_hf(hf));
  const Tensor& s = back.at(P + ".router.per_expert_scale");
  for (std::int64_t e = 0; e < E; ++e) EXPECT_EQ(s.f32()[e], 1.0f);
  EXPECT_EQ(back.at(P + ".experts.down_proj").f32()[0], 2.0f * hf.at(P + ".experts.down_proj").f32()[0]);
  EXPECT_TRUE(same_bytes(back.at(P + ".experts.gate_up_proj"), hf.at(P + ".experts.gate_up_proj")));
}

TEST(StateDictAdapter, AlreadyConvertedInputIsRefused) {
  const StateDict hf = hf_layer(P, {1, 1, 1, 1});
  EXPECT_THROW(gemma4_moe_to_hf(hf), Error);
  EXPECT_THROW(gemma4_moe_from_hf(gemma4_moe_from_hf(hf)), Error);
}

TEST(StateDictAdapter, ExpertRangesAreContiguousWithTheRemainderOnTheFirstRanks) {
  // 10 experts over 4 ranks: 3, 3, 2, 2.
  const std::int64_t starts[4] = {0, 3, 6, 8}, counts[4] = {3, 3, 2, 2};
  for (int r = 0; r < 4; ++r) {
    EXPECT_EQ(expert_range(10, 4, r).start, starts[r]);
    EXPECT_EQ(expert_range(10, 4, r).count, counts[r]);
  }
  EXPECT_EQ(expert_range(128, 8, 3).start, 48);
  EXPECT_EQ(expert_range(128, 8, 3).count, 16);
  EXPECT_THROW(expert_range(4, 8, 0), Error);
  EXPECT_THROW(expert_range(8, 2, 2), Error);
}

TEST(StateDictAdapter, FromHfSlicesExpertsPerRankAndGatherRestoresTheWhole) {
  const std::int64_t E5 = 5;
  StateDict hf;
  hf[P + ".experts.gate_up_proj"] = random_tensor({E5, 2 * I, H}, 3);
  hf[P + ".experts.down_proj"] = random_tensor({E5, H, I}, 4);
  hf[P + ".router.per_expert_scale"] = Tensor::from_floats({E5}, {1, 2, 3, 4, 5});
  const StateDict full = gemma4_moe_from_hf(hf);
  std::vector<Tensor> gu, dn;
  for (int r = 0; r < 2; ++r) {
    AdapterOptions o;
    o.ep_size = 2, o.ep_rank = r;
    const StateDict part = gemma4_moe_from_hf(hf, o);
    EXPECT_EQ(part.at(P + ".moe.experts.down_projs").dim(0), r == 0 ? 3 : 2);
    gu.push_back(part.at(P + ".moe.experts.gate_and_up_projs"));
    dn.push_back(part.at(P + ".moe.experts.down_projs"));
  }
  // The scale of a rank's experts is the global one: rank 1's first expert is expert 3 (scale 4).
  EXPECT_EQ(dn[1].f32()[0], 4.0f * hf.at(P + ".experts.down_proj").f32()[3 * H * I]);
  EXPECT_TRUE(same_bytes(gather_experts(gu), full.at(P + ".moe.experts.gate_and_up_projs")));
  EXPECT_TRUE(same_bytes(gather_experts(dn), full.at(P + ".moe.experts.down_projs")));
  EXPECT_TRUE(
      same_bytes(slice_experts(full.at(P + ".moe.experts.down_projs"), expert_range(5, 2, 1)), dn[1]));
  EXPECT_THROW(gather_experts({dn[1], dn[0]}), Error);  // wrong counts per rank
}

TEST(StateDictAdapter, SingleTensorConversionEmitsDownAndLocalOnesScale) {
  const Tensor local_down = random_tensor({2, I, H}, 7);  // an EP shard of 2 experts
  const auto out = convert_single_tensor_to_hf(P + ".moe.experts.down_projs", local_down);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].first, P + ".experts.down_proj");
  EXPECT_EQ(out[0].second.shape(), (Shape{2, H, I}));
  EXPECT_EQ(out[1].first, P + ".router.per_expert_scale");
  EXPECT_EQ(out[1].second.shape(), (Shape{2}));
  EXPECT_EQ(convert_single_tensor_to_hf(P + ".moe.gate.scale", random_tensor({H}, 8))[0].first,
            P + ".router.scale");
  EXPECT_EQ(convert_single_tensor_to_hf("model.norm.weight", random_tensor({H}, 8))[0].first,
            "model.norm.weight");
}

TEST(StateDictAdapter, GradientMappingIsTheChainRuleThroughTheFold) {
  // L = Σ G·D_native with D_native[e,i,h] = D_hf[e,h,i]·s_e: dL/dD_hf = s·Gᵀ, dL/ds_e = Σ G[e]·D_hf[e]ᵀ.
  StateDict hf = hf_layer(P, {2.0f, 1.0f, 0.5f, 3.0f});
  const Tensor G = random_tensor({E, I, H}, 11);
  StateDict grads;
  grads[P + ".moe.experts.down_projs"] = G;
  grads[P + ".moe.gate.proj.weight"] = random_tensor({E, H}, 12);
  const StateDict g = gemma4_moe_grads_to_hf(grads, hf);
  EXPECT_TRUE(same_bytes(g.at(P + ".router.proj.weight"), grads.at(P + ".moe.gate.proj.weight")));
  const Tensor& gd = g.at(P + ".experts.down_proj");
  const Tensor& gs = g.at(P + ".router.per_expert_scale");
  // Numerical check on the scale: L(s) is linear in s_e.
  auto L = [&](const StateDict& w) {
    const Tensor dn = gemma4_moe_from_hf(w).at(P + ".moe.experts.down_projs");
    double sum = 0;
    for (std::int64_t i = 0; i < dn.numel(); ++i) sum += static_cast<double>(dn.f32()[i]) * G.f32()[i];
    return sum;
  };
  for (std::int64_t e = 0; e < E; ++e) {
    StateDict up = hf, down = hf;
    up[P + ".router.per_expert_scale"] = hf.at(P + ".router.per_expert_scale").clone();
    down[P + ".router.per_expert_scale"] = hf.at(P + ".router.per_expert_scale").clone();
    up[P + ".router.per_expert_scale"].f32()[e] += 0.125f;
    down[P + ".router.per_expert_scale"].f32()[e] -= 0.125f;
    EXPECT_NEAR(gs.f32()[e], (L(up) - L(down)) / 0.25, 1e-4 * (1 + std::abs(gs.f32()[e])));
  }
  const float s[E] = {2.0f, 1.0f, 0.5f, 3.0f};
  for (std::int64_t e = 0; e < E; ++e)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t i = 0; i < I; ++i)
        EXPECT_FLOAT_EQ(gd.f32()[(e * H + h) * I + i], s[e] * G.f32()[(e * I + i) * H + h]);
}

TEST(StateDictAdapter, TheCommittedMoeFixturesConvertAndRoundTripBitExactly) {
  for (const char* fixture : {"tests/fixtures/moe_26b", "tests/fixtures/released_layout"}) {
    const Checkpoint ckpt = Checkpoint::open(test::source_path(fixture));
    StateDict hf;
    for (const std::string& n : ckpt.names()) hf[n] = ckpt.read(n);
    AdapterOptions o;
    o.log = [](const std::string&) {};
    const StateDict n = gemma4_moe_from_hf(hf, o);
    const StateDict back = gemma4_moe_to_hf(n, o);
    ASSERT_EQ(back.size(), hf.size()) << fixture;
    for (const auto& [name, t] : hf) {
      const bool scaled = name.find("per_expert_scale") != std::string::npos ||
                          name.find("experts.down_proj") != std::string::npos;
      bool unit = true;
      if (scaled) {
        const std::string layer =
            name.substr(0, name.find(name.find("router") != std::string::npos ? ".router" : ".experts"));
        const Tensor& sc = hf.at(layer + ".router.per_expert_scale");
        for (std::int64_t e = 0; e < sc.numel(); ++e) unit = unit && sc.f32()[e] == 1.0f;
      }
      if (!scaled || unit) {
        EXPECT_TRUE(same_bytes(back.at(name), t)) << fixture << " " << name;
      }
    }
    // The vision tower has "layers.N" too, but is passed through.
    for (const auto& [name, t] : n)
      EXPECT_EQ(name.find("vision_tower.encoder.layers.0.moe"), std::string::npos);
  }
}

}  // namespace
}  // namespace g4
