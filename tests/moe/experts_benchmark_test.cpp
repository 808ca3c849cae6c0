// Benchmark (disabled by default): the MoE experts' forward + backward on the CPU at a mid-size shape, loop
// vs grouped backend, fp32. Run with
//   ./build/tests/g4_tests --gtest_also_run_disabled_tests --gtest_filter='*ExpertsBenchmark*'
// It also checks that the two backends agree at this shape (1e-5), so a fast-but-wrong backend cannot pass.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "ops/cpu/moe_experts.h"
#include "ops/moe_test_util.h"

namespace g4 {
namespace {

TEST(ExpertsBenchmark, DISABLED_LoopVersusGroupedForwardBackward) {
  // G4_BENCH_SHAPE="T,H,I,E,K" overrides the default mid-size shape.
  long long T = 1024, H = 1024, I = 512, E = 32, K = 4;
  if (const char* s = std::getenv("G4_BENCH_SHAPE"))
    std::sscanf(s, "%lld,%lld,%lld,%lld,%lld", &T, &H, &I, &E, &K);
  const auto x = test::random_vector<float>(T * H, 1);
  const auto w = test::random_vector<float>(T * K, 2, 0.1, 1.0);
  const auto gu = test::random_vector<float>(E * H * 2 * I, 3, -0.05, 0.05);
  const auto dn = test::random_vector<float>(E * I * H, 4, -0.05, 0.05);
  const auto dy = test::random_vector<float>(T * H, 5);
  std::vector<std::int64_t> idx;
  std::mt19937 gen(6);
  for (std::int64_t t = 0; t < T; ++t) {
    std::vector<std::int64_t> e(E);
    for (std::int64_t i = 0; i < E; ++i) e[i] = i;
    std::shuffle(e.begin(), e.end(), gen);
    idx.insert(idx.end(), e.begin(), e.begin() + K);
  }
  std::vector<std::vector<float>> outs;
  for (ExpertsBackend b : {ExpertsBackend::loop, ExpertsBackend::grouped}) {
    ExpertsConfig c;
    c.hidden = H, c.inter = I, c.num_experts = E, c.n_local = E, c.backend = b;
    ExpertsContext<float> ctx;
    std::vector<float> y(T * H), dx(T * H), dw(T * K), dgu(gu.size(), 0.f), ddn(dn.size(), 0.f);
    std::vector<double> fwd_ms, bwd_ms;
    for (int rep = 0; rep < 4; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      moe_experts_forward<float>(c, x.data(), nullptr, w.data(), idx.data(), T, K, gu.data(), dn.data(),
                                 y.data(), &ctx);
      const auto t1 = std::chrono::steady_clock::now();
      moe_experts_backward<float>(c, x.data(), gu.data(), dn.data(), ctx, dy.data(), dx.data(), dw.data(),
                                  dgu.data(), ddn.data());
      const auto t2 = std::chrono::steady_clock::now();
      if (rep == 0) continue;  // warm-up
      fwd_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      bwd_ms.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
    }
    std::sort(fwd_ms.begin(), fwd_ms.end());
    std::sort(bwd_ms.begin(), bwd_ms.end());
    const double flops = 6.0 * T * K * H * I;  // forward; backward is twice that
    std::printf(
        "experts %-7s T=%lld H=%lld I=%lld E=%lld K=%lld: forward %.1f ms (%.1f GFLOP/s), backward %.1f ms "
        "(%.1f GFLOP/s) [median of 3]\n",
        b == ExpertsBackend::loop ? "loop" : "grouped", (long long)T, (long long)H, (long long)I,
        (long long)E, (long long)K, fwd_ms[1], flops / fwd_ms[1] / 1e6, bwd_ms[1],
        2 * flops / bwd_ms[1] / 1e6);
    outs.push_back(y);
    outs.push_back(dx);
  }
  EXPECT_LE(
      test::tolerance_ratio({outs[0].begin(), outs[0].end()}, {outs[2].begin(), outs[2].end()}, 1e-5, 1e-5),
      1.0);
  EXPECT_LE(
      test::tolerance_ratio({outs[1].begin(), outs[1].end()}, {outs[3].begin(), outs[3].end()}, 1e-5, 1e-5),
      1.0);
}

}  // namespace
}  // namespace g4
