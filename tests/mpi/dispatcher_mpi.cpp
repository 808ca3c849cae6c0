// dispatcher_mpi.cpp: the token dispatchers under MPI against the one-process experts (run by
// tests/cli/mpi_test.sh as `mpirun -np 2|4 g4_mpi_tests`). Every rank builds the same global problem (all
// ranks' tokens, all experts), computes the one-process reference, and checks its own rows of the output, of
// the input and routing-weight gradients, and its own experts' gradients. Uneven token counts, ranks without
// tokens, ranks whose experts receive nothing and fully masked batches are covered; expert counts that do not
// divide the ranks use the remainder rule.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "dist/communicator.h"
#include "moe/state_dict_adapter.h"
#include "moe/token_dispatcher.h"

namespace g4 {
namespace {

struct Problem {
  std::int64_t E = 8, K = 3, H = 16, I = 8;
  std::vector<std::int64_t> lens;  // tokens per rank
  bool all_masked = false;
  bool only_first_rank_experts = false;  // every token routes to rank 0's experts only
};

template <class T>
struct Data {
  std::vector<T> x, w, gu, down, dy;
  std::vector<std::int64_t> idx;
  std::vector<std::uint8_t> mask;
};

template <class T>
Data<T> make_data(const Problem& p, std::int64_t total, std::int64_t first_rank_experts) {
  std::mt19937_64 rng(1234);
  std::uniform_real_distribution<double> u(-1, 1);
  Data<T> d;
  auto fill = [&](std::vector<T>& v, std::int64_t n) {
    v.resize(static_cast<std::size_t>(n));
    for (T& x : v) x = static_cast<T>(u(rng));
  };
  fill(d.x, total * p.H);
  fill(d.gu, p.E * p.H * 2 * p.I);
  fill(d.down, p.E * p.I * p.H);
  fill(d.dy, total * p.H);
  d.w.resize(static_cast<std::size_t>(total * p.K));
  d.idx.resize(static_cast<std::size_t>(total * p.K));
  d.mask.resize(static_cast<std::size_t>(total));
  for (std::int64_t t = 0; t < total; ++t) {
    std::vector<std::int64_t> experts(
        static_cast<std::size_t>(p.only_first_rank_experts ? first_rank_experts : p.E));
    for (std::size_t e = 0; e < experts.size(); ++e) experts[e] = static_cast<std::int64_t>(e);
    std::shuffle(experts.begin(), experts.end(), rng);
    double sum = 0;
    for (std::int64_t k = 0; k < p.K; ++k) {
      d.idx[t * p.K + k] = experts[static_cast<std::size_t>(k % static_cast<std::int64_t>(experts.size()))];
      d.w[t * p.K + k] = static_cast<T>(0.1 + std::abs(u(rng)));
      sum += static_cast<double>(d.w[t * p.K + k]);
    }
    for (std::int64_t k = 0; k < p.K; ++k) d.w[t * p.K + k] = static_cast<T>(d.w[t * p.K + k] / sum);
    d.mask[t] = p.all_masked ? 0 : (t % 5 != 3);  // some masked tokens everywhere
  }
  return d;
}

template <class T>
void expect_close(const T* got, const T* want, std::int64_t n, double rtol, const char* what) {
  double scale = 0, diff = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    ASSERT_TRUE(std::isfinite(static_cast<double>(got[i]))) << what << "[" << i << "] is not finite";
    scale = std::max(scale, std::abs(static_cast<double>(want[i])));
    diff = std::max(diff, std::abs(static_cast<double>(got[i]) - static_cast<double>(want[i])));
  }
  EXPECT_LE(diff, rtol * std::max(scale, 1e-30))
      << what << ": max |diff| " << diff << ", max |ref| " << scale;
}

template <class T>
void run(const Problem& p, DispatcherKind kind, double rtol) {
  Communicator& world = world_communicator();
  const int P = world.size(), me = world.rank();
  ASSERT_EQ(static_cast<int>(p.lens.size()), P);
  std::int64_t total = 0, offset = 0;
  for (int r = 0; r < P; ++r) {
    if (r == me) offset = total;
    total += p.lens[r];
  }
  const std::int64_t T0 = p.lens[me], H = p.H, K = p.K, I = p.I;
  const ExpertRange mine = expert_range(p.E, P, me);
  const Data<T> d = make_data<T>(p, total, expert_range(p.E, P, 0).count);

  ExpertsConfig full;
  full.hidden = H;
  full.inter = I;
  full.num_experts = p.E;
  full.n_local = p.E;
  // Reference: one process, all tokens, all experts.
  std::vector<T> y_ref(static_cast<std::size_t>(total * H) + 1), dx_ref(y_ref.size()),
      dw_ref(static_cast<std::size_t>(total * K) + 1), dgu_ref(d.gu.size()), ddown_ref(d.down.size());
  ExpertsContext<T> ref;
  moe_experts_forward<T>(full, d.x.data(), d.mask.data(), d.w.data(), d.idx.data(), total, K, d.gu.data(),
                         d.down.data(), y_ref.data(), &ref);
  moe_experts_backward<T>(full, d.x.data(), d.gu.data(), d.down.data(), ref, d.dy.data(), dx_ref.data(),
                          dw_ref.data(), dgu_ref.data(), ddown_ref.data());

  // Dispatched: this rank's tokens, this rank's experts.
  const MoeParallel par = make_moe_parallel(world, kind, false, p.E);
  const std::int64_t gu_per = H * 2 * I, down_per = I * H;
  std::vector<T> gu(d.gu.begin() + mine.start * gu_per, d.gu.begin() + (mine.start + mine.count) * gu_per);
  std::vector<T> down(d.down.begin() + mine.start * down_per,
                      d.down.begin() + (mine.start + mine.count) * down_per);
  std::vector<T> y(static_cast<std::size_t>(T0 * H) + 1), dx(y.size()),
      dw(static_cast<std::size_t>(T0 * K) + 1), dgu(gu.size() + 1), ddown(down.size() + 1);
  DispatchContext<T> ctx;
  dispatched_experts_forward<T>(par, full, d.x.data() + offset * H, d.mask.data() + offset,
                                d.w.data() + offset * K, d.idx.data() + offset * K, T0, K, gu.data(),
                                down.data(), y.data(), &ctx);
  dispatched_experts_backward<T>(par, full, gu.data(), down.data(), ctx, d.dy.data() + offset * H, dx.data(),
                                 dw.data(), dgu.data(), ddown.data());
  expect_close(y.data(), y_ref.data() + offset * H, T0 * H, rtol, "y");
  expect_close(dx.data(), dx_ref.data() + offset * H, T0 * H, rtol, "dx");
  expect_close(dw.data(), dw_ref.data() + offset * K, T0 * K, rtol, "dweights");
  expect_close(dgu.data(), dgu_ref.data() + mine.start * gu_per, mine.count * gu_per, rtol, "dgate_and_up");
  expect_close(ddown.data(), ddown_ref.data() + mine.start * down_per, mine.count * down_per, rtol, "ddown");
  if (p.all_masked) {
    for (std::int64_t i = 0; i < T0 * H; ++i) ASSERT_EQ(y[i], T(0));
  }
}

std::vector<std::int64_t> uneven_lens() {
  // 2 ranks: (3, 2) as the note's test; more ranks: one rank without tokens.
  const int P = world_communicator().size();
  if (P == 2) return {3, 2};
  std::vector<std::int64_t> lens;
  for (int r = 0; r < P; ++r) lens.push_back(r == 1 ? 0 : 2 + 3 * r);
  return lens;
}

class Dispatchers : public ::testing::TestWithParam<DispatcherKind> {};

TEST_P(Dispatchers, MatchOneProcessWithUnevenTokenCountsFp32) {
  Problem p;
  p.lens = uneven_lens();
  run<float>(p, GetParam(), 1e-5);
}

TEST_P(Dispatchers, MatchOneProcessWithUnevenTokenCountsFp64) {
  Problem p;
  p.lens = uneven_lens();
  run<double>(p, GetParam(), 1e-12);
}

TEST_P(Dispatchers, ExpertsThatDoNotDivideTheRanksUseTheRemainderRule) {
  Problem p;
  p.E = 7;
  p.lens = uneven_lens();
  run<double>(p, GetParam(), 1e-12);
}

TEST_P(Dispatchers, RanksWhoseExpertsReceiveNothing) {
  Problem p;
  p.K = 2;
  p.only_first_rank_experts = true;
  p.lens = uneven_lens();
  run<double>(p, GetParam(), 1e-12);
}

TEST_P(Dispatchers, EveryTokenMasked) {
  Problem p;
  p.all_masked = true;
  p.lens = uneven_lens();
  run<double>(p, GetParam(), 1e-12);
}

TEST_P(Dispatchers, NoTokensAnywhere) {
  Problem p;
  p.lens.assign(static_cast<std::size_t>(world_communicator().size()), 0);
  run<float>(p, GetParam(), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(MPI, Dispatchers,
                         ::testing::Values(DispatcherKind::allgather, DispatcherKind::alltoall),
                         [](const auto& info) { return std::string(dispatcher_name(info.param)); });

TEST(Communicator, CollectivesMoveTheRightBytes) {
  Communicator& c = world_communicator();
  const int P = c.size(), me = c.rank();
  double s = me + 1;
  c.all_reduce_sum(&s, 1);
  EXPECT_EQ(s, P * (P + 1) / 2.0);
  // reduce_scatter: rank r contributes (r + 1) everywhere; rank s receives s + 1 sums of P(P+1)/2.
  std::vector<std::size_t> counts;
  std::vector<double> all;
  for (int r = 0; r < P; ++r) {
    counts.push_back(static_cast<std::size_t>(r + 1));
    all.insert(all.end(), static_cast<std::size_t>(r + 1), me + 1.0);
  }
  std::vector<double> mine(static_cast<std::size_t>(me + 1));
  c.reduce_scatter_sum(all.data(), mine.data(), counts, ReduceType::f64);
  for (double v : mine) EXPECT_EQ(v, P * (P + 1) / 2.0);
  std::int64_t b = me == 0 ? 42 : 0;
  c.broadcast(&b, sizeof b, 0);
  EXPECT_EQ(b, 42);
  // all_to_all_v: rank r sends r+1 copies of (100·r + s) to rank s.
  std::vector<std::int64_t> send;
  std::vector<std::size_t> sb, rb;
  for (int dst = 0; dst < P; ++dst) {
    for (int i = 0; i <= me; ++i) send.push_back(100 * me + dst);
    sb.push_back(static_cast<std::size_t>(me + 1) * sizeof(std::int64_t));
  }
  std::size_t total = 0;
  for (int src = 0; src < P; ++src) {
    rb.push_back(static_cast<std::size_t>(src + 1) * sizeof(std::int64_t));
    total += static_cast<std::size_t>(src + 1);
  }
  std::vector<std::int64_t> recv(total);
  c.all_to_all_v(send.data(), sb, recv.data(), rb);
  std::size_t at = 0;
  for (int src = 0; src < P; ++src)
    for (int i = 0; i <= src; ++i) EXPECT_EQ(recv[at++], 100 * src + me);
}

}  // namespace
}  // namespace g4

namespace g4 {
namespace {

// Timing of both dispatchers (forward and backward of the experts, median of 3 after a warm-up), run by hand:
//   mpirun -np 2 build-mpi/g4_mpi_tests --gtest_also_run_disabled_tests
//   --gtest_filter='*DispatcherBenchmark*'
// G4_BENCH_SHAPE="T,H,I,E,K" (T = tokens per rank; default one 26B-A4B layer, 256 tokens per rank). With
// -np 1 it times the one-process grouped experts over the same total tokens (the peer).
TEST(DispatcherBenchmark, DISABLED_ForwardBackward) {
  Communicator& world = world_communicator();
  std::int64_t T = 256, H = 2816, I = 704, E = 128, K = 8;
  if (const char* s = std::getenv("G4_BENCH_SHAPE")) {
    ASSERT_EQ(std::sscanf(s, "%ld,%ld,%ld,%ld,%ld", &T, &H, &I, &E, &K), 5);
  }
  const int P = world.size();
  const ExpertRange mine = expert_range(E, P, world.rank());
  std::uint64_t state = 0x9e3779b97f4a7c15ull + static_cast<std::uint64_t>(world.rank());
  auto rnd = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<float>(static_cast<double>(state >> 11) / 9007199254740992.0 - 0.5);
  };
  const std::int64_t tokens = P == 1 ? 2 * T : T;  // -np 1: the same total work as -np 2
  std::vector<float> x(static_cast<std::size_t>(tokens * H)), dy(x.size()), y(x.size()), dx(x.size());
  std::vector<float> gu(static_cast<std::size_t>(mine.count * H * 2 * I)),
      down(static_cast<std::size_t>(mine.count * I * H));
  std::vector<float> dgu(gu.size()), ddown(down.size());
  for (float& v : x) v = rnd();
  for (float& v : dy) v = rnd();
  for (float& v : gu) v = 0.05f * rnd();
  for (float& v : down) v = 0.05f * rnd();
  std::vector<float> w(static_cast<std::size_t>(tokens * K), 1.0f / static_cast<float>(K)), dw(w.size());
  std::vector<std::int64_t> idx(w.size());
  for (std::int64_t t = 0; t < tokens; ++t) {
    std::vector<std::int64_t> e(static_cast<std::size_t>(E));
    for (std::int64_t i = 0; i < E; ++i) e[i] = i;
    for (std::int64_t k = 0; k < K; ++k) {
      const std::int64_t j =
          k + static_cast<std::int64_t>((rnd() + 0.5f) * static_cast<float>(E - k)) % (E - k);
      std::swap(e[k], e[j]);
      idx[t * K + k] = e[k];
    }
  }
  ExpertsConfig cfg;
  cfg.hidden = H;
  cfg.inter = I;
  cfg.num_experts = E;
  cfg.n_local = E;
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  };
  for (DispatcherKind kind : {DispatcherKind::allgather, DispatcherKind::alltoall}) {
    const MoeParallel par = make_moe_parallel(world, kind, false, E);
    DispatchContext<float> ctx;
    ExpertsContext<float> local;
    std::vector<double> f, b;
    for (int rep = 0; rep < 4; ++rep) {
      world.barrier();
      const auto t0 = Clock::now();
      if (P == 1)
        moe_experts_forward<float>(cfg, x.data(), nullptr, w.data(), idx.data(), tokens, K, gu.data(),
                                   down.data(), y.data(), &local);
      else
        dispatched_experts_forward<float>(par, cfg, x.data(), nullptr, w.data(), idx.data(), tokens, K,
                                          gu.data(), down.data(), y.data(), &ctx);
      world.barrier();
      const auto t1 = Clock::now();
      if (P == 1)
        moe_experts_backward<float>(cfg, x.data(), gu.data(), down.data(), local, dy.data(), dx.data(),
                                    dw.data(), dgu.data(), ddown.data());
      else
        dispatched_experts_backward<float>(par, cfg, gu.data(), down.data(), ctx, dy.data(), dx.data(),
                                           dw.data(), dgu.data(), ddown.data());
      world.barrier();
      const auto t2 = Clock::now();
      if (rep > 0) {
        f.push_back(ms(t0, t1));
        b.push_back(ms(t1, t2));
      }
    }
    if (world.rank() == 0)
      std::printf(
          "ranks %d, tokens/rank %ld, H %ld, I %ld, E %ld, K %ld, %s: forward %.1f ms, backward %.1f ms, "
          "rows at the experts (rank 0) %ld\n",
          P, tokens, H, I, E, K, P == 1 ? "one process (grouped)" : dispatcher_name(kind), median(f),
          median(b), P == 1 ? tokens : ctx.rows);
    if (P == 1) break;
  }
}

}  // namespace
}  // namespace g4
