// The MoE block's CUDA kernels against plain fp64 host loops: permutation, the Gemma4Gate forward and
// backward, and the grouped experts forward and backward, on random shapes with masked tokens, out-of-range
// indices and experts that get no tokens.
//
// Tolerances (relative Frobenius error): the device keeps h = x W_gu, a = weighted GEGLU(h) and o = a W_d in
// bf16 (each rounding is relative 2^-9, about 1e-3 in norm), and the backward stores dO, da, dh, dX in bf16
// as well; chained through two GEMMs and gelu' these give a few 1e-3, so 1e-2 is the bound for every expert
// output and gradient (METHOD.md: bf16 operands land between 1e-3 and 1e-2). The router runs in fp32 and
// matches to 1e-4, except its weights, rounded to bf16 like NeMo's (1 bf16 ulp, 2^-8 relative).
#include <algorithm>
#include <cmath>

#include "cuda_test_util.h"
#include "ops/cuda/moe_experts.h"
#include "ops/cuda/moe_gate.h"
#include "ops/cuda/moe_permute.h"

namespace g4::cuda::test {
namespace {

double gelu(double x) {
  return 0.5 * x * (1.0 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}
double gelu_slope(double x) {
  double t = std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x));
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * 0.7978845608028654 * (1 + 3 * 0.044715 * x * x);
}

struct Routing {
  std::vector<int> indices;
  std::vector<float> weights;
  std::vector<std::uint8_t> mask;
};

// Random routing where experts in `unused` never appear, some tokens are masked and a few choices are -1.
Routing random_routing(int T, int E, int K, std::mt19937& rng, const std::vector<int>& unused) {
  Routing r;
  std::vector<int> pool;
  for (int e = 0; e < E; ++e)
    if (std::find(unused.begin(), unused.end(), e) == unused.end()) pool.push_back(e);
  std::uniform_real_distribution<float> u(0.05f, 1.0f);
  for (int t = 0; t < T; ++t) {
    std::shuffle(pool.begin(), pool.end(), rng);
    for (int k = 0; k < K; ++k) {
      r.indices.push_back(rng() % 17 == 0 ? -1 : pool[k]);
      r.weights.push_back(round_to_bf16(u(rng)));
    }
    r.mask.push_back(rng() % 5 == 0 ? 0 : 1);
  }
  return r;
}

TEST(MoePermute, StableExpertMajorOrderSkipsMaskedAndInvalidSlots) {
  G4_SKIP_WITHOUT_CUDA();
  std::mt19937 rng(11);
  const int T = 700, E = 9, K = 3;  // 2100 slots: several 256-slot chunks
  Routing r = random_routing(T, E, K, rng, {4});
  auto di = to_device(r.indices), dw = to_device(r.weights), dm = to_device(r.mask);
  DeviceBuffer scratch(moe_permute_scratch_ints(T, K, E) * 4), off((E + 1) * 4), toff((E + 1) * 4),
      tok(T * K * 4), wt(T * K * 4), slot(T * K * 4);
  poison(slot);
  MoePermutation p{off.as<int>(), toff.as<int>(), tok.as<int>(), wt.as<float>(), slot.as<int>()};
  moe_permute(di.as<int>(), dw.as<float>(), dm.as<std::uint8_t>(), T, K, E, scratch.as<int>(), p, nullptr);
  G4_CUDA_CHECK(cudaDeviceSynchronize());
  auto offsets = from_device<int>(off, E + 1), tiles = from_device<int>(toff, E + 1);
  auto slot_row = from_device<int>(slot, T * K), row_token = from_device<int>(tok, T * K);
  auto row_weight = from_device<float>(wt, T * K);
  // Host: expected rows in expert-major, slot order.
  std::vector<int> expected_slots;
  std::vector<int> expected_offsets{0}, expected_tiles{0};
  for (int e = 0; e < E; ++e) {
    for (int s = 0; s < T * K; ++s)
      if (r.mask[s / K] && r.indices[s] == e) expected_slots.push_back(s);
    int count = static_cast<int>(expected_slots.size()) - expected_offsets.back();
    expected_offsets.push_back(static_cast<int>(expected_slots.size()));
    expected_tiles.push_back(expected_tiles.back() + (count + 127) / 128);
  }
  EXPECT_EQ(offsets, expected_offsets);
  EXPECT_EQ(tiles, expected_tiles);
  EXPECT_EQ(offsets[5] - offsets[4], 0) << "expert 4 gets no tokens";
  for (std::size_t i = 0; i < expected_slots.size(); ++i) {
    int s = expected_slots[i];
    ASSERT_EQ(slot_row[s], static_cast<int>(i));
    ASSERT_EQ(row_token[i], s / K);
    ASSERT_EQ(row_weight[i], r.weights[s]);
  }
  int dead = 0;
  for (int s = 0; s < T * K; ++s) dead += slot_row[s] == -1;
  EXPECT_EQ(dead, T * K - static_cast<int>(expected_slots.size()));
}

// ---- Gemma4Gate ----

struct GateRef {
  std::vector<double> probs;  // [T, E]
  std::vector<double> ns;     // [T, H]
  std::vector<double> rms;
};

GateRef gate_reference(const std::vector<float>& x, const std::vector<float>& proj,
                       const std::vector<float>& scale, int T, int H, int E, float eps) {
  GateRef g{std::vector<double>(static_cast<std::size_t>(T) * E),
            std::vector<double>(static_cast<std::size_t>(T) * H), std::vector<double>(T)};
  const double root = 1.0 / std::sqrt(static_cast<double>(H));
  for (int t = 0; t < T; ++t) {
    double ss = 0;
    for (int h = 0; h < H; ++h) ss += static_cast<double>(x[t * H + h]) * x[t * H + h];
    float r = static_cast<float>(1.0 / std::sqrt(ss / H + eps));
    g.rms[t] = r;
    for (int h = 0; h < H; ++h)
      g.ns[t * H + h] = round_to_bf16(x[t * H + h] * r) * static_cast<double>(scale[h]) * root;
    double mx = -1e300;
    std::vector<double> l(E);
    for (int e = 0; e < E; ++e) {
      double acc = 0;
      for (int h = 0; h < H; ++h) acc += g.ns[t * H + h] * proj[e * H + h];
      l[e] = acc;
      mx = std::max(mx, acc);
    }
    double sum = 0;
    for (int e = 0; e < E; ++e) sum += std::exp(l[e] - mx);
    for (int e = 0; e < E; ++e) g.probs[t * E + e] = std::exp(l[e] - mx) / sum;
  }
  return g;
}

struct GateDevice {
  GateShape shape;
  DeviceBuffer x, proj, scale, rms, ns, logits, indices, weights;
  GateSaved saved() {
    return {rms.as<float>(), ns.as<float>(), logits.as<float>(), indices.as<int>(), weights.as<float>()};
  }
};

TEST(MoeGate, ForwardMatchesHostSoftmaxTopKAndBackwardMatchesChainRule) {
  G4_SKIP_WITHOUT_CUDA();
  std::mt19937 rng(21);
  const int T = 67, H = 200, E = 40, K = 6;
  const float eps = 1e-6f;
  auto x = random_bf16_values(T * H, rng, 3.0f);
  auto proj = random_bf16_values(E * H, rng, 0.5f);
  auto scale = random_bf16_values(H, rng, 1.0f);
  CudaContext ctx;
  GateShape s{T, H, E, K, eps};
  auto dx_ = to_device_bf16(x), dproj = to_device(proj), dscale = to_device(scale);
  DeviceBuffer rms(T * 4), ns(T * H * 4), logits(T * E * 4), idx(T * K * 4), w(T * K * 4);
  GateSaved saved{rms.as<float>(), ns.as<float>(), logits.as<float>(), idx.as<int>(), w.as<float>()};
  poison(idx);
  poison(w);
  moe_gate_forward(ctx, s, dx_.as<__nv_bfloat16>(), dproj.as<float>(), dscale.as<float>(), saved);
  ctx.synchronize();
  auto indices = from_device<int>(idx, T * K);
  auto weights = from_device<float>(w, T * K);
  GateRef ref = gate_reference(x, proj, scale, T, H, E, eps);
  for (int t = 0; t < T; ++t) {
    std::vector<int> order(E);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return ref.probs[t * E + a] > ref.probs[t * E + b]; });
    double sum = 0;
    for (int k = 0; k < K; ++k) sum += ref.probs[t * E + order[k]];
    for (int k = 0; k < K; ++k) {
      int got = indices[t * K + k];
      ASSERT_GE(got, 0);
      ASSERT_LT(got, E);
      // The device's choice must be a true k-th largest (equal up to fp32 noise if the reference has a
      // near-tie).
      EXPECT_NEAR(ref.probs[t * E + got], ref.probs[t * E + order[k]], 1e-6)
          << "token " << t << " rank " << k;
      double expect_w = ref.probs[t * E + got] / sum;
      EXPECT_NEAR(weights[t * K + k], expect_w, expect_w * 5e-3) << "token " << t << " rank " << k;
    }
  }

  // Backward: loss = sum d_w[t,k] * w[t,k]; compare with the host chain rule in fp64.
  auto dw = random_bf16_values(T * K, rng);
  auto ddw = to_device(dw);
  DeviceBuffer scratch(moe_gate_backward_scratch_floats(s) * 4), dxb(T * H * 4);
  auto d_proj0 = random_bf16_values(E * H, rng), d_scale0 = random_bf16_values(H, rng);
  auto dd_proj = to_device(d_proj0), dd_scale = to_device(d_scale0);
  poison(dxb);
  moe_gate_backward(ctx, s, dx_.as<__nv_bfloat16>(), dproj.as<float>(), dscale.as<float>(), saved,
                    ddw.as<float>(), scratch.as<float>(), dxb.as<float>(), dd_proj.as<float>(),
                    dd_scale.as<float>());
  ctx.synchronize();
  auto got_dx = from_device<float>(dxb, T * H);
  auto got_dproj = from_device<float>(dd_proj, E * H);
  auto got_dscale = from_device<float>(dd_scale, H);
  std::vector<double> rdx(T * H), rdproj(d_proj0.begin(), d_proj0.end()),
      rdscale(d_scale0.begin(), d_scale0.end());
  const double root = 1.0 / std::sqrt(static_cast<double>(H));
  for (int t = 0; t < T; ++t) {
    double S = 0;
    for (int k = 0; k < K; ++k) S += ref.probs[t * E + indices[t * K + k]];
    double dot = 0;
    for (int k = 0; k < K; ++k) dot += dw[t * K + k] * ref.probs[t * E + indices[t * K + k]] / S;
    std::vector<double> dp(E, 0.0);
    for (int k = 0; k < K; ++k) dp[indices[t * K + k]] = (dw[t * K + k] - dot) / S;
    double inner = 0;
    for (int e = 0; e < E; ++e) inner += dp[e] * ref.probs[t * E + e];
    std::vector<double> dl(E), dns(H, 0.0);
    for (int e = 0; e < E; ++e) dl[e] = ref.probs[t * E + e] * (dp[e] - inner);
    for (int e = 0; e < E; ++e)
      for (int h = 0; h < H; ++h) {
        dns[h] += dl[e] * proj[e * H + h];
        rdproj[e * H + h] += dl[e] * ref.ns[t * H + h];
      }
    double r = ref.rms[t], xdot = 0;
    for (int h = 0; h < H; ++h) {
      double n = round_to_bf16(static_cast<float>(x[t * H + h] * r));
      rdscale[h] += dns[h] * n * root;
      xdot += dns[h] * scale[h] * root * x[t * H + h];
    }
    for (int h = 0; h < H; ++h)
      rdx[t * H + h] = r * dns[h] * scale[h] * root - x[t * H + h] * r * r * r * xdot / H;
  }
  EXPECT_LT(rel_error(got_dx, rdx), 1e-4);
  EXPECT_LT(rel_error(got_dproj, rdproj), 1e-4);
  EXPECT_LT(rel_error(got_dscale, rdscale), 1e-4);
}

// ---- grouped experts ----

struct ExpertsRef {
  std::vector<double> y, dx, d_gate_up, d_down, d_weights;
};

ExpertsRef experts_reference(const std::vector<float>& x, const Routing& r, const std::vector<float>& wgu,
                             const std::vector<float>& wd, const std::vector<float>& dy, int T, int H, int I,
                             int E, int K) {
  ExpertsRef o{std::vector<double>(T * H, 0.0), std::vector<double>(T * H, 0.0),
               std::vector<double>(static_cast<std::size_t>(E) * H * 2 * I, 0.0),
               std::vector<double>(static_cast<std::size_t>(E) * I * H, 0.0),
               std::vector<double>(T * K, 0.0)};
  std::vector<double> h(2 * I), a(I), da(I), dh(2 * I);
  for (int t = 0; t < T; ++t)
    for (int k = 0; k < K; ++k) {
      int e = r.indices[t * K + k];
      if (!r.mask[t] || e < 0 || e >= E) continue;
      double w = r.weights[t * K + k];
      const float* Wg = &wgu[static_cast<std::size_t>(e) * H * 2 * I];
      const float* Wd = &wd[static_cast<std::size_t>(e) * I * H];
      for (int j = 0; j < 2 * I; ++j) {
        double acc = 0;
        for (int i = 0; i < H; ++i) acc += static_cast<double>(x[t * H + i]) * Wg[i * 2 * I + j];
        h[j] = acc;
      }
      for (int j = 0; j < I; ++j) a[j] = gelu(h[j]) * h[I + j] * w;
      for (int c = 0; c < H; ++c) {
        double acc = 0;
        for (int j = 0; j < I; ++j) acc += a[j] * Wd[j * H + c];
        o.y[t * H + c] += acc;
      }
      // backward
      double dwk = 0;
      for (int j = 0; j < I; ++j) {
        double acc = 0;
        for (int c = 0; c < H; ++c) {
          acc += Wd[j * H + c] * static_cast<double>(dy[t * H + c]);
          o.d_down[(static_cast<std::size_t>(e) * I + j) * H + c] += a[j] * dy[t * H + c];
        }
        da[j] = acc;
        dh[j] = acc * w * gelu_slope(h[j]) * h[I + j];
        dh[I + j] = acc * w * gelu(h[j]);
        dwk += gelu(h[j]) * h[I + j] * acc;
      }
      o.d_weights[t * K + k] = dwk;
      for (int i = 0; i < H; ++i) {
        double acc = 0;
        for (int j = 0; j < 2 * I; ++j) {
          acc += Wg[i * 2 * I + j] * dh[j];
          o.d_gate_up[(static_cast<std::size_t>(e) * H + i) * 2 * I + j] += x[t * H + i] * dh[j];
        }
        o.dx[t * H + i] += acc;
      }
    }
  return o;
}

void check_experts(int T, int H, int I, int E, int K, const std::vector<int>& unused, bool fp32_grads,
                   std::uint32_t seed, bool fused_gather = true) {
  std::mt19937 rng(seed);
  auto x = random_bf16_values(T * H, rng);
  auto wgu = random_bf16_values(static_cast<std::size_t>(E) * H * 2 * I, rng, 1.0f / std::sqrt(float(H)));
  auto wd = random_bf16_values(static_cast<std::size_t>(E) * I * H, rng, 1.0f / std::sqrt(float(I)));
  auto dy = random_bf16_values(T * H, rng);
  Routing r = random_routing(T, E, K, rng, unused);
  ExpertsRef ref = experts_reference(x, r, wgu, wd, dy, T, H, I, E, K);

  CudaContext ctx;
  MoeExpertsCuda experts(ctx, {T + 5, H, I, E, K});
  experts.set_gather_mode(fused_gather ? GatherMode::fused : GatherMode::materialised);
  auto dx_in = to_device_bf16(x), dgu = to_device_bf16(wgu), dd = to_device_bf16(wd),
       ddy = to_device_bf16(dy);
  auto di = to_device(r.indices), dwt = to_device(r.weights), dm = to_device(r.mask);
  DeviceBuffer y(T * H * 2), dx(T * H * 2), dweights(T * K * 4);
  std::size_t ngu = static_cast<std::size_t>(E) * H * 2 * I, nd = static_cast<std::size_t>(E) * I * H;
  DeviceBuffer g_gu(ngu * (fp32_grads ? 4 : 2)), g_d(nd * (fp32_grads ? 4 : 2));
  if (fp32_grads) {
    G4_CUDA_CHECK(cudaMemset(g_gu.data(), 0, g_gu.bytes()));
    G4_CUDA_CHECK(cudaMemset(g_d.data(), 0, g_d.bytes()));
  } else {
    poison(g_gu);
    poison(g_d);
  }
  poison(y);
  poison(dx);
  poison(dweights);
  ExpertWeights w{dgu.as<__nv_bfloat16>(), dd.as<__nv_bfloat16>()};
  experts.forward(T, dx_in.as<__nv_bfloat16>(), dwt.as<float>(), di.as<int>(), dm.as<std::uint8_t>(), w,
                  y.as<__nv_bfloat16>());
  experts.backward(ddy.as<__nv_bfloat16>(), w, {g_gu.data(), g_d.data(), fp32_grads}, dx.as<__nv_bfloat16>(),
                   dweights.as<float>());
  ctx.synchronize();
  auto got_y = from_device_bf16(y, T * H), got_dx = from_device_bf16(dx, T * H);
  auto got_dw = from_device<float>(dweights, T * K);
  auto got_gu = fp32_grads ? from_device<float>(g_gu, ngu) : from_device_bf16(g_gu, ngu);
  auto got_d = fp32_grads ? from_device<float>(g_d, nd) : from_device_bf16(g_d, nd);
  EXPECT_LT(rel_error(got_y, ref.y), 1e-2);
  EXPECT_LT(rel_error(got_dx, ref.dx), 1e-2);
  EXPECT_LT(rel_error(got_dw, ref.d_weights), 1e-2);
  EXPECT_LT(rel_error(got_gu, ref.d_gate_up), 1e-2);
  EXPECT_LT(rel_error(got_d, ref.d_down), 1e-2);
  // Masked tokens: exactly zero output and input gradient; dead slots: zero routing-weight gradient.
  for (int t = 0; t < T; ++t)
    if (!r.mask[t]) {
      for (int c = 0; c < H; ++c) {
        ASSERT_EQ(got_y[t * H + c], 0.0f);
        ASSERT_EQ(got_dx[t * H + c], 0.0f);
      }
      for (int k = 0; k < K; ++k) ASSERT_EQ(got_dw[t * K + k], 0.0f);
    }
  // Experts that got no tokens: zero weight gradients.
  for (int e : unused)
    for (std::size_t i = 0; i < static_cast<std::size_t>(I) * H; ++i)
      ASSERT_EQ(got_d[e * static_cast<std::size_t>(I) * H + i], 0.0f);
}

TEST(MoeExperts, ForwardBackwardMatchHostLoopsBf16Grads) {
  G4_SKIP_WITHOUT_CUDA();
  check_experts(150, 136, 72, 10, 3, {2, 7}, false, 31);
}

TEST(MoeExperts, ForwardBackwardMatchHostLoopsFp32Grads) {
  G4_SKIP_WITHOUT_CUDA();
  check_experts(97, 256, 64, 6, 2, {0}, true, 32);
}

TEST(MoeExperts, MaterialisedGatherMatchesHostLoops) {
  G4_SKIP_WITHOUT_CUDA();
  check_experts(150, 136, 72, 10, 3, {2, 7}, false, 34, /*fused_gather=*/false);
}

// GatherMode::automatic's rule (runs without a GPU).
TEST(GatherMode, AutomaticMaterialisesFromTheThresholdRowCount) {
  EXPECT_TRUE(gathers_fused(GatherMode::automatic, gather_materialise_rows - 1));
  EXPECT_FALSE(gathers_fused(GatherMode::automatic, gather_materialise_rows));
  EXPECT_TRUE(gathers_fused(GatherMode::fused, 1ll << 40));
  EXPECT_FALSE(gathers_fused(GatherMode::materialised, 1));
}

// The layer's outputs and gradients (bf16 weight gradients) for one routing, under one gather mode.
struct LayerOutputs {
  std::vector<float> y, dx, d_weights, d_gate_up, d_down;
};
LayerOutputs run_layer(GatherMode mode, int T, int H, int I, int E, int K, std::uint32_t seed) {
  std::mt19937 rng(seed);
  auto x = random_bf16_values(static_cast<std::size_t>(T) * H, rng);
  auto wgu = random_bf16_values(static_cast<std::size_t>(E) * H * 2 * I, rng, 1.0f / std::sqrt(float(H)));
  auto wd = random_bf16_values(static_cast<std::size_t>(E) * I * H, rng, 1.0f / std::sqrt(float(I)));
  auto dy = random_bf16_values(static_cast<std::size_t>(T) * H, rng);
  Routing r = random_routing(T, E, K, rng, {});
  CudaContext ctx;
  MoeExpertsCuda experts(ctx, {T, H, I, E, K});
  experts.set_gather_mode(mode);
  auto dx_in = to_device_bf16(x), dgu = to_device_bf16(wgu), dd = to_device_bf16(wd),
       ddy = to_device_bf16(dy);
  auto di = to_device(r.indices), dwt = to_device(r.weights), dm = to_device(r.mask);
  const std::size_t th = static_cast<std::size_t>(T) * H, ngu = static_cast<std::size_t>(E) * H * 2 * I,
                    nd = static_cast<std::size_t>(E) * I * H;
  DeviceBuffer y(th * 2), dx(th * 2), dweights(static_cast<std::size_t>(T) * K * 4), g_gu(ngu * 2),
      g_d(nd * 2);
  for (DeviceBuffer* b : {&y, &dx, &dweights, &g_gu, &g_d}) poison(*b);
  ExpertWeights w{dgu.as<__nv_bfloat16>(), dd.as<__nv_bfloat16>()};
  experts.forward(T, dx_in.as<__nv_bfloat16>(), dwt.as<float>(), di.as<int>(), dm.as<std::uint8_t>(), w,
                  y.as<__nv_bfloat16>());
  experts.backward(ddy.as<__nv_bfloat16>(), w, {g_gu.data(), g_d.data(), false}, dx.as<__nv_bfloat16>(),
                   dweights.as<float>());
  ctx.synchronize();
  return {from_device_bf16(y, th), from_device_bf16(dx, th),
          from_device<float>(dweights, static_cast<std::size_t>(T) * K), from_device_bf16(g_gu, ngu),
          from_device_bf16(g_d, nd)};
}

// At gather_materialise_rows rows, automatic materialises: the same kernels read the same values (in place
// instead of through the row map), so every output must equal both explicit modes' bit for bit (and be
// finite: the buffers start as NaN).
TEST(MoeExperts, AutomaticGatherModeMatchesFusedAndMaterialised) {
  G4_SKIP_WITHOUT_CUDA();
  const int K = 8, T = static_cast<int>(gather_materialise_rows / K), H = 64, I = 32, E = 16;
  const LayerOutputs fused = run_layer(GatherMode::fused, T, H, I, E, K, 41);
  const LayerOutputs materialised = run_layer(GatherMode::materialised, T, H, I, E, K, 41);
  const LayerOutputs automatic = run_layer(GatherMode::automatic, T, H, I, E, K, 41);
  auto finite = [](const std::vector<float>& v) {
    return std::all_of(v.begin(), v.end(), [](float f) { return std::isfinite(f); });
  };
  for (const LayerOutputs* o : {&fused, &materialised, &automatic}) {
    EXPECT_TRUE(finite(o->y) && finite(o->dx) && finite(o->d_weights) && finite(o->d_gate_up) &&
                finite(o->d_down));
  }
  EXPECT_EQ(automatic.y, materialised.y);
  EXPECT_EQ(automatic.dx, materialised.dx);
  EXPECT_EQ(automatic.d_weights, materialised.d_weights);
  EXPECT_EQ(automatic.d_gate_up, materialised.d_gate_up);
  EXPECT_EQ(automatic.d_down, materialised.d_down);
  EXPECT_EQ(fused.y, materialised.y);
  EXPECT_EQ(fused.dx, materialised.dx);
  EXPECT_EQ(fused.d_weights, materialised.d_weights);
  EXPECT_EQ(fused.d_gate_up, materialised.d_gate_up);
  EXPECT_EQ(fused.d_down, materialised.d_down);
}

TEST(MoeExperts, TwentySixBShapesOnFewTokens) {
  G4_SKIP_WITHOUT_CUDA();
  // The production widths (H 2816, I 704), 128 experts, top-8, on 40 tokens: most experts get no token.
  check_experts(40, 2816, 704, 128, 8, {5, 6}, false, 33);
}

}  // namespace
}  // namespace g4::cuda::test
