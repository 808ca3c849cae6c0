// token_dispatcher_test.cpp: the parallel pieces in one process (the one-rank communicator): both dispatchers
// (through the Dispatcher interface) reduce to the plain grouped experts bit for bit, process groups and the
// EP setup check their sizes, and batch rows split by the remainder rule. The multi-rank behaviour is tested
// under mpirun (tests/mpi/dispatcher_mpi.cpp, tests/cli/mpi_test.sh).
#include <gtest/gtest.h>

#include "core/error.h"
#include "dist/process_groups.h"
#include "moe/dispatcher.h"
#include "moe/parallel_setup.h"
#include "ops/moe_test_util.h"

namespace g4 {
namespace {

TEST(TokenDispatcher, OneRankEqualsGroupedExpertsExactly) {
  const std::int64_t T = 7, H = 8, I = 4, E = 4, K = 2;
  ExpertsConfig cfg;
  cfg.hidden = H;
  cfg.inter = I;
  cfg.num_experts = E;
  cfg.n_local = E;
  auto x = test::random_vector<float>(T * H, 1), gu = test::random_vector<float>(E * H * 2 * I, 2),
       down = test::random_vector<float>(E * I * H, 3), dy = test::random_vector<float>(T * H, 4);
  std::vector<float> w(T * K, 0.5f);
  std::vector<std::int64_t> idx(T * K);
  for (std::int64_t t = 0; t < T; ++t) idx[t * K] = t % E, idx[t * K + 1] = (t + 1) % E;
  std::vector<std::uint8_t> mask = {1, 1, 0, 1, 1, 1, 0};
  std::vector<float> y_ref(T * H), dx_ref(T * H), dw_ref(T * K), dgu_ref(gu.size()), ddown_ref(down.size());
  ExpertsContext<float> ref;
  moe_experts_forward<float>(cfg, x.data(), mask.data(), w.data(), idx.data(), T, K, gu.data(), down.data(),
                             y_ref.data(), &ref);
  moe_experts_backward<float>(cfg, x.data(), gu.data(), down.data(), ref, dy.data(), dx_ref.data(),
                              dw_ref.data(), dgu_ref.data(), ddown_ref.data());
  auto one = make_single_communicator();
  for (DispatcherKind kind : {DispatcherKind::allgather, DispatcherKind::alltoall}) {
    for (bool replicated : {false, true}) {
      const GroupDispatcher<float> group(make_moe_parallel(*one, kind, replicated, E));
      EXPECT_TRUE(group.collective());
      EXPECT_EQ(group.local_experts(E).count, E);
      std::vector<float> y(T * H), dx(T * H), dw(T * K), dgu(gu.size()), ddown(down.size());
      DispatchContext<float> ctx;
      group.forward(cfg, x.data(), mask.data(), w.data(), idx.data(), T, K, gu.data(), down.data(), y.data(),
                    &ctx);
      group.backward(cfg, x.data(), gu.data(), down.data(), ctx, dy.data(), dx.data(), dw.data(), dgu.data(),
                     ddown.data());
      EXPECT_EQ(y, y_ref) << dispatcher_name(kind);
      EXPECT_EQ(dx, dx_ref) << dispatcher_name(kind);
      EXPECT_EQ(dw, dw_ref) << dispatcher_name(kind);
      EXPECT_EQ(dgu, dgu_ref) << dispatcher_name(kind);
      EXPECT_EQ(ddown, ddown_ref) << dispatcher_name(kind);
    }
  }
}

TEST(TokenDispatcher, NamesAreCheckedAndRoundTrip) {
  EXPECT_EQ(dispatcher_from_name("allgather"), DispatcherKind::allgather);
  EXPECT_EQ(dispatcher_from_name(dispatcher_name(DispatcherKind::alltoall)), DispatcherKind::alltoall);
  EXPECT_THROW(dispatcher_from_name("deepep"), Error);
}

TEST(ParallelSetup, ChecksExpertAndRankCounts) {
  auto one = make_single_communicator();
  EXPECT_NO_THROW(make_parallel_setup(*one, 8, 1, DispatcherKind::alltoall));
  EXPECT_FALSE(make_parallel_setup(*one, 8, 1, DispatcherKind::alltoall).dispatcher->collective());
  EXPECT_THROW(make_parallel_setup(*one, 8, 3, DispatcherKind::alltoall), Error);  // 8 % 3
  EXPECT_THROW(make_parallel_setup(*one, 8, 2, DispatcherKind::alltoall), Error);  // 2 ranks needed
  EXPECT_THROW(make_parallel_setup(*one, 0, 2, DispatcherKind::alltoall), Error);  // dense model
  EXPECT_THROW(make_parallel_setup(*one, 8, 0, DispatcherKind::alltoall), Error);
  const ProcessGroups g = make_process_groups(*one, 1);
  EXPECT_EQ(g.ep->size(), 1);
  EXPECT_EQ(g.dp->size(), 1);
}

TEST(TokenDispatcher, AllGatherExpertsOnOneRankIsTheTensor) {
  auto one = make_single_communicator();
  Tensor t = Tensor::from_floats({2, 3}, {1, 2, 3, 4, 5, 6});
  const Tensor full = all_gather_experts(*one, t, 2);
  ASSERT_EQ(full.shape(), t.shape());
  for (int i = 0; i < 6; ++i) EXPECT_EQ(full.f32()[i], t.f32()[i]);
}

}  // namespace
}  // namespace g4
