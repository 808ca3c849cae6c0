// nccl_collectives.cpp: every collective of the NCCL communicator against values computed on the host.
//
// Written for any number of ranks: one rank under ctest (or on the one-GPU machine), and unchanged under
// `mpirun -np N build/g4_nccl_tests` on N GPUs in an MPI build (the bootstrap is world_communicator()). Every
// rank fills its inputs from (rank, index) formulas, so each rank knows what every other rank sent. Without a
// CUDA device every test skips (visibly). The communicator is made once per process and destroyed before
// exit (before MPI_Finalize).
#include <gtest/gtest.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "cuda/cuda_test_util.h"
#include "dist/communicator.h"
#include "dist/nccl_communicator.h"

namespace g4 {
namespace {

using cuda::DeviceBuffer;
using cuda::test::from_device;
using cuda::test::poison;
using cuda::test::to_device;

std::unique_ptr<NcclCommunicator>& shared_slot() {
  static std::unique_ptr<NcclCommunicator> comm;
  return comm;
}

NcclCommunicator& nccl_world() {
  std::unique_ptr<NcclCommunicator>& comm = shared_slot();
  if (!comm) comm = std::make_unique<NcclCommunicator>(world_communicator());
  return *comm;
}

class DestroyBeforeExit : public ::testing::Environment {
 public:
  void TearDown() override { shared_slot().reset(); }
};
[[maybe_unused]] const ::testing::Environment* const g_destroy =
    ::testing::AddGlobalTestEnvironment(new DestroyBeforeExit);

// The byte rank `src` sends to rank `dst` at offset i (all_to_all_v), or broadcasts/gathers (dst = -1).
std::uint8_t pattern(int src, int dst, std::size_t i) {
  return static_cast<std::uint8_t>(src * 31 + dst * 7 + static_cast<int>(i % 251) + 1);
}

std::vector<std::uint8_t> block(int src, int dst, std::size_t bytes) {
  std::vector<std::uint8_t> v(bytes);
  for (std::size_t i = 0; i < bytes; ++i) v[i] = pattern(src, dst, i);
  return v;
}

// Exact in every type: small integers (times 0.5 or 0.25 for the floating-point types).
template <class T>
T element(int rank, std::size_t i) {
  if constexpr (std::is_same_v<T, float>)
    return static_cast<float>((rank + 1) * static_cast<int>(i % 97)) * 0.5f;
  if constexpr (std::is_same_v<T, double>)
    return static_cast<double>(rank + 1) * 0.25 + static_cast<double>(i);
  if constexpr (std::is_same_v<T, std::int64_t>) return std::int64_t{rank + 1} * 1000003 + std::int64_t(i);
}

template <class T>
void check_all_reduce(NcclCommunicator& comm, std::size_t n) {
  std::vector<T> mine(n);
  for (std::size_t i = 0; i < n; ++i) mine[i] = element<T>(comm.rank(), i);
  DeviceBuffer d = to_device(mine);
  comm.all_reduce_sum(d.as<T>(), n);
  const std::vector<T> got = from_device<T>(d, n);
  for (std::size_t i = 0; i < n; ++i) {
    T want = 0;
    for (int r = 0; r < comm.size(); ++r) want += element<T>(r, i);
    ASSERT_EQ(got[i], want) << "n = " << n << ", element " << i;
  }
}

TEST(NcclCommunicator, RankSizeAndDevice) {
  G4_SKIP_WITHOUT_CUDA();
  NcclCommunicator& comm = nccl_world();
  Communicator& world = world_communicator();
  EXPECT_EQ(comm.rank(), world.rank());
  EXPECT_EQ(comm.size(), world.size());
  int devices = 0;
  ASSERT_EQ(cudaGetDeviceCount(&devices), cudaSuccess);
  EXPECT_GE(comm.device(), 0);
  EXPECT_LT(comm.device(), devices);
  int version = 0;
  ncclGetVersion(&version);
  std::printf("[ nccl     ] rank %d of %d on device %d of %d, NCCL %d, G4_COMM_TIMEOUT_S %g s\n", comm.rank(),
              comm.size(), comm.device(), devices, version, comm.timeout_seconds());
}

TEST(NcclCommunicator, Barrier) {
  G4_SKIP_WITHOUT_CUDA();
  NcclCommunicator& comm = nccl_world();
  for (int i = 0; i < 3; ++i) comm.barrier();
}

TEST(NcclCommunicator, AllReduceSumEveryType) {
  G4_SKIP_WITHOUT_CUDA();
  NcclCommunicator& comm = nccl_world();
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{4097}, std::size_t{1} << 20}) {
    check_all_reduce<float>(comm, n);
    check_all_reduce<double>(comm, n);
    check_all_reduce<std::int64_t>(comm, n);
  }
}

TEST(NcclCommunicator, BroadcastFromEveryRoot) {
  G4_SKIP_WITHOUT_CUDA();
  NcclCommunicator& comm = nccl_world();
  for (std::size_t bytes : {std::size_t{0}, std::size_t{1}, std::size_t{100003}}) {
    for (int root = 0; root < comm.size(); ++root) {
      DeviceBuffer d = to_device(block(comm.rank(), -1, bytes));
      comm.broadcast(d.data(), bytes, root);
      EXPECT_EQ(from_device<std::uint8_t>(d, bytes), block(root, -1, bytes))
          << bytes << " bytes from " << root;
    }
  }
}

TEST(NcclCommunicator, AllGather) {
  G4_SKIP_WITHOUT_CUDA();
  NcclCommunicator& comm = nccl_world();
  const std::size_t p = static_cast<std::size_t>(comm.size());
  for (std::size_t bytes : {std::size_t{0}, std::size_t{12}, std::size_t{4099}}) {
    DeviceBuffer send = to_device(block(comm.rank(), -1, bytes));
    DeviceBuffer recv(p * bytes + 16);
    poison(recv);
    comm.all_gather(send.data(), bytes, recv.data());
    std::vector<std::uint8_t> want;
    for (int r = 0; r < comm.size(); ++r) {
      const std::vector<std::uint8_t> b = block(r, -1, bytes);
      want.insert(want.end(), b.begin(), b.end());
    }
    EXPECT_EQ(from_device<std::uint8_t>(recv, p * bytes), want) << bytes << " bytes per rank";
  }
}

// Per-rank lengths with zero-length blocks (rank 0's included), all non-zero, and all zero.
const std::vector<std::function<std::size_t(int)>> kGatherLengths = {
    [](int r) { return static_cast<std::size_t>(r % 3) * 5; },
    [](int r) { return static_cast<std::size_t>(100 + r * 37); },
    [](int) { return std::size_t{0}; },
};

TEST(NcclCommunicator, AllGatherVariableLengths) {
  G4_SKIP_WITHOUT_CUDA();
  NcclCommunicator& comm = nccl_world();
  for (std::size_t rule = 0; rule < kGatherLengths.size(); ++rule) {
    std::vector<std::size_t> lengths;
    std::vector<std::uint8_t> want;
    for (int r = 0; r < comm.size(); ++r) {
      lengths.push_back(kGatherLengths[rule](r));
      const std::vector<std::uint8_t> b = block(r, -1, lengths.back());
      want.insert(want.end(), b.begin(), b.end());
    }
    DeviceBuffer send = to_device(block(comm.rank(), -1, lengths[comm.rank()]));
    DeviceBuffer recv(want.size() + 16);
    poison(recv);
    comm.all_gather_v(send.data(), lengths[comm.rank()], recv.data(), lengths);
    EXPECT_EQ(from_device<std::uint8_t>(recv, want.size()), want) << "length rule " << rule;
  }
}

// Bytes rank s sends to rank d: zero-length blocks included (the self block too), all non-zero, all zero.
const std::vector<std::function<std::size_t(int, int)>> kAllToAllLengths = {
    [](int s, int d) { return static_cast<std::size_t>((s + 2 * d) % 3) * 8; },
    [](int s, int d) { return static_cast<std::size_t>(16 + s * 3 + d * 5); },
    [](int, int) { return std::size_t{0}; },
};

TEST(NcclCommunicator, AllToAllWithCounts) {
  G4_SKIP_WITHOUT_CUDA();
  NcclCommunicator& comm = nccl_world();
  const int me = comm.rank();
  for (std::size_t rule = 0; rule < kAllToAllLengths.size(); ++rule) {
    const auto& len = kAllToAllLengths[rule];
    std::vector<std::size_t> send_bytes, recv_bytes;
    std::vector<std::uint8_t> send, want;
    for (int peer = 0; peer < comm.size(); ++peer) {
      send_bytes.push_back(len(me, peer));
      recv_bytes.push_back(len(peer, me));
      const std::vector<std::uint8_t> out = block(me, peer, send_bytes.back());
      const std::vector<std::uint8_t> in = block(peer, me, recv_bytes.back());
      send.insert(send.end(), out.begin(), out.end());
      want.insert(want.end(), in.begin(), in.end());
    }
    DeviceBuffer d_send = to_device(send);
    DeviceBuffer d_recv(want.size() + 16);
    poison(d_recv);
    comm.all_to_all_v(d_send.data(), send_bytes, d_recv.data(), recv_bytes);
    EXPECT_EQ(from_device<std::uint8_t>(d_recv, want.size()), want) << "length rule " << rule;
  }
}

// Elements per rank block: equal (ncclReduceScatter), unequal with zero blocks (grouped ncclReduce; only
// reachable with 2+ ranks), all zero.
const std::vector<std::function<std::size_t(int)>> kScatterCounts = {
    [](int) { return std::size_t{257}; },
    [](int r) { return static_cast<std::size_t>((r % 2) * 3 + r); },
    [](int) { return std::size_t{0}; },
};

template <class T>
void check_reduce_scatter(NcclCommunicator& comm, const std::vector<std::size_t>& counts, ReduceType type) {
  const std::size_t total = std::accumulate(counts.begin(), counts.end(), std::size_t{0});
  const std::size_t at = std::accumulate(counts.begin(), counts.begin() + comm.rank(), std::size_t{0});
  const std::size_t n = counts[comm.rank()];
  std::vector<T> mine(total);
  for (std::size_t j = 0; j < total; ++j) mine[j] = element<T>(comm.rank(), j);
  DeviceBuffer data = to_device(mine);
  DeviceBuffer recv(n * sizeof(T) + 16);
  poison(recv);
  comm.reduce_scatter_sum(data.data(), recv.data(), counts, type);
  const std::vector<T> got = from_device<T>(recv, n);
  for (std::size_t i = 0; i < n; ++i) {
    T want = 0;
    for (int r = 0; r < comm.size(); ++r) want += element<T>(r, at + i);
    ASSERT_EQ(got[i], want) << "element " << i << " of " << n;
  }
}

TEST(NcclCommunicator, ReduceScatterSumPerRankCounts) {
  G4_SKIP_WITHOUT_CUDA();
  NcclCommunicator& comm = nccl_world();
  for (std::size_t rule = 0; rule < kScatterCounts.size(); ++rule) {
    SCOPED_TRACE("count rule " + std::to_string(rule));
    std::vector<std::size_t> counts;
    for (int r = 0; r < comm.size(); ++r) counts.push_back(kScatterCounts[rule](r));
    check_reduce_scatter<float>(comm, counts, ReduceType::f32);
    check_reduce_scatter<double>(comm, counts, ReduceType::f64);
    check_reduce_scatter<std::int64_t>(comm, counts, ReduceType::i64);
  }
}

// Split by parity: key = -rank orders a group by descending world rank; equal keys keep the world order.
TEST(NcclCommunicator, SplitOrdersByKeyThenRank) {
  G4_SKIP_WITHOUT_CUDA();
  NcclCommunicator& comm = nccl_world();
  for (bool descending : {true, false}) {
    const int color = comm.rank() % 2;
    std::unique_ptr<Communicator> sub = comm.split(color, descending ? -comm.rank() : 0);
    std::vector<std::int32_t> members;
    for (int r = 0; r < comm.size(); ++r)
      if (r % 2 == color) members.push_back(r);
    if (descending) std::reverse(members.begin(), members.end());
    ASSERT_EQ(sub->size(), static_cast<int>(members.size()));
    EXPECT_EQ(members[static_cast<std::size_t>(sub->rank())], comm.rank());

    DeviceBuffer send = to_device(std::vector<std::int32_t>{comm.rank()});
    DeviceBuffer recv(members.size() * 4 + 16);
    poison(recv);
    sub->all_gather(send.data(), 4, recv.data());
    EXPECT_EQ(from_device<std::int32_t>(recv, members.size()), members);

    DeviceBuffer sum = to_device(std::vector<std::int64_t>{comm.rank()});
    sub->all_reduce_sum(sum.as<std::int64_t>(), 1);
    EXPECT_EQ(from_device<std::int64_t>(sum, 1)[0], std::accumulate(members.begin(), members.end(), 0));
    sub->barrier();
  }
}

TEST(NcclCommunicator, HostBufferIsAnErrorNotACrash) {
  G4_SKIP_WITHOUT_CUDA();
  NcclCommunicator& comm = nccl_world();
  std::vector<float> host(16, 1.0f);
  try {
    comm.all_reduce_sum(host.data(), host.size());
    FAIL() << "a host buffer was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("takes device buffers only"), std::string::npos) << e.what();
  }
  comm.barrier();  // still usable: nothing was sent
}

// Sets G4_COMM_TIMEOUT_S for the communicators made in its lifetime, then restores it.
class ShortTimeout {
 public:
  explicit ShortTimeout(const char* seconds) {
    if (const char* old = std::getenv("G4_COMM_TIMEOUT_S")) saved_ = old;
    had_ = std::getenv("G4_COMM_TIMEOUT_S") != nullptr;
    setenv("G4_COMM_TIMEOUT_S", seconds, 1);
  }
  ~ShortTimeout() {
    if (had_)
      setenv("G4_COMM_TIMEOUT_S", saved_.c_str(), 1);
    else
      unsetenv("G4_COMM_TIMEOUT_S");
  }

 private:
  std::string saved_;
  bool had_ = false;
};

// A receive that no rank sends (every rank waits for 8 bytes from itself): the call must end with an error
// (NCCL may refuse the unmatched self-receive, or it waits: then the timeout), abort that communicator,
// refuse later calls, and leave the parent usable.
TEST(NcclCommunicator, UnmatchedReceiveFailsAndAborts) {
  G4_SKIP_WITHOUT_CUDA();
  NcclCommunicator& comm = nccl_world();
  std::unique_ptr<Communicator> sub;
  {
    ShortTimeout t("2");
    sub = comm.split(0, comm.rank());
  }
  EXPECT_EQ(dynamic_cast<NcclCommunicator&>(*sub).timeout_seconds(), 2.0);

  std::vector<std::size_t> send_bytes(static_cast<std::size_t>(sub->size()), 0), recv_bytes = send_bytes;
  recv_bytes[static_cast<std::size_t>(sub->rank())] = 8;
  DeviceBuffer send(16), recv(16);
  const auto start = std::chrono::steady_clock::now();
  try {
    sub->all_to_all_v(send.data(), send_bytes, recv.data(), recv_bytes);
    FAIL() << "an unmatched receive completed";
  } catch (const Error& e) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("[ nccl     ] after %.2f s: %s\n", s, e.what());
    EXPECT_NE(std::string(e.what()).find("NCCL all_to_all_v"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("aborted"), std::string::npos) << e.what();
    EXPECT_LT(s, 30.0);
  }
  try {
    sub->barrier();
    FAIL() << "an aborted communicator was used";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("aborted after an earlier failure"), std::string::npos) << e.what();
  }
  sub.reset();
  comm.barrier();  // the parent is untouched
}

// A bootstrap of two ranks whose second rank never comes: rank 0 of it is this process (each rank of a
// multi-rank run makes its own). The host collectives only copy; NCCL's init then waits for a dead peer.
class PhantomPeerBootstrap final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 2; }
  void barrier() override {}
  void broadcast(void*, std::size_t, int) override {}  // rank 0 is the root: nothing to receive
  void all_reduce_sum(void*, std::size_t, ReduceType) override { fail("unused"); }
  void reduce_scatter_sum(const void*, void*, const std::vector<std::size_t>&, ReduceType) override {
    fail("unused");
  }
  void all_gather(const void* send, std::size_t bytes, void* recv) override {
    std::memcpy(recv, send, bytes);
    std::memset(static_cast<char*>(recv) + bytes, 'x', bytes);  // another host
  }
  void all_gather_v(const void*, std::size_t, void*, const std::vector<std::size_t>&) override {
    fail("unused");
  }
  void all_to_all_v(const void*, const std::vector<std::size_t>&, void*,
                    const std::vector<std::size_t>&) override {
    fail("unused");
  }
  std::unique_ptr<Communicator> split(int, int) override { fail("unused"); }
};

// The dead-peer case itself: initialisation waits for a rank that never joins, and must end with a one-line
// error after G4_COMM_TIMEOUT_S instead of hanging. Last: it leaves NCCL's bootstrap thread behind.
TEST(NcclCommunicator, DeadPeerAtInitTimesOut) {
  G4_SKIP_WITHOUT_CUDA();
  PhantomPeerBootstrap bootstrap;
  ShortTimeout t("2");
  const auto start = std::chrono::steady_clock::now();
  try {
    NcclCommunicator never(bootstrap);
    FAIL() << "a communicator with a missing rank was made";
  } catch (const Error& e) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("[ nccl     ] after %.2f s: %s\n", s, e.what());
    EXPECT_NE(std::string(e.what()).find("NCCL init did not complete within 2 s"), std::string::npos)
        << e.what();
    EXPECT_LT(s, 30.0);
  }
}

}  // namespace
}  // namespace g4
