// nccl_communicator.cpp: the Communicator over NCCL (see nccl_communicator.h for the invariants).
#include "dist/nccl_communicator.h"

#include <nccl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "core/cuda/cuda_check.h"
#include "core/error.h"
#include "dist/nccl_wait.h"
#include "dist/watchdog.h"

namespace g4 {

namespace {

ncclDataType_t nccl_type(ReduceType t) {
  switch (t) {
    case ReduceType::f32:
      return ncclFloat32;
    case ReduceType::f64:
      return ncclFloat64;
    case ReduceType::i64:
      return ncclInt64;
  }
  return ncclFloat32;
}

std::size_t element_bytes(ReduceType t) {
  return t == ReduceType::f32 ? 4 : 8;
}

bool enqueue_ok(ncclResult_t rc) {
  return rc == ncclSuccess || rc == ncclInProgress;
}

// Prefix sums: offsets[r] = Σ_{s<r} sizes[s].
std::vector<std::size_t> offsets(const std::vector<std::size_t>& sizes) {
  std::vector<std::size_t> out(sizes.size(), 0);
  std::exclusive_scan(sizes.begin(), sizes.end(), out.begin(), std::size_t{0});
  return out;
}

// Runs `body` (which enqueues NCCL operations and returns the first failure, else ncclSuccess) between
// ncclGroupStart and ncclGroupEnd; the group is always closed. Returns the first failure or ncclGroupEnd's
// result (ncclInProgress on a non-blocking communicator).
template <class Body>
ncclResult_t in_group(Body&& body) {
  ncclResult_t rc = ncclGroupStart();
  if (rc != ncclSuccess) return rc;
  const ncclResult_t first = body();
  rc = ncclGroupEnd();
  return enqueue_ok(first) ? rc : first;
}

// The first failure of a sequence of enqueues inside a group.
struct FirstFailure {
  ncclResult_t rc = ncclSuccess;
  void operator()(ncclResult_t r) {
    if (enqueue_ok(rc) && !enqueue_ok(r)) rc = r;
  }
};

// This rank's index among the bootstrap ranks of its host (collective over the bootstrap).
int local_rank(Communicator& bootstrap) {
  constexpr std::size_t n = 256;
  char mine[n] = {};
  check(gethostname(mine, n - 1) == 0, "rank ", bootstrap.rank(), ": gethostname failed");
  std::vector<char> all(n * static_cast<std::size_t>(bootstrap.size()));
  bootstrap.all_gather(mine, n, all.data());
  int local = 0;
  for (int r = 0; r < bootstrap.rank(); ++r)
    if (std::strncmp(all.data() + static_cast<std::size_t>(r) * n, mine, n) == 0) ++local;
  return local;
}

ncclConfig_t nonblocking_config() {
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  return config;
}

// What rank 0 broadcasts over the bootstrap: the id, or that making it failed (so no rank waits for it).
struct IdMessage {
  std::int32_t ok = 0;
  ncclResult_t rc = ncclSuccess;
  ncclUniqueId id{};
};

}  // namespace

NcclCommunicator::NcclCommunicator(Communicator& bootstrap)
    : world_rank_(bootstrap.rank()), timeout_s_(comm_timeout_seconds()) {
  const int local = local_rank(bootstrap);
  int count = 0;
  G4_CUDA_CHECK(cudaGetDeviceCount(&count));
  check(count > 0, "rank ", world_rank_, ": NCCL communicator: no CUDA device");
  device_ = local % count;
  G4_CUDA_CHECK(cudaSetDevice(device_));

  IdMessage msg;
  if (bootstrap.rank() == 0) {
    msg.rc = ncclGetUniqueId(&msg.id);
    msg.ok = msg.rc == ncclSuccess;
  }
  bootstrap.broadcast(&msg, sizeof msg, 0);
  check(msg.ok != 0, "rank ", world_rank_,
        ": NCCL ncclGetUniqueId failed on rank 0: ", ncclGetErrorString(msg.rc));

  ncclConfig_t config = nonblocking_config();
  ncclComm_t comm = nullptr;
  const ncclResult_t rc = ncclCommInitRankConfig(&comm, bootstrap.size(), msg.id, bootstrap.rank(), &config);
  comm_ = comm;
  if (!enqueue_ok(rc)) abort_with("init", "failed: " + nccl_describe(comm, rc));
  if (const std::string why = nccl_wait(comm_, nullptr, timeout_s_); !why.empty()) abort_with("init", why);
  init_after_comm();
}

NcclCommunicator::NcclCommunicator(ncclComm* comm, int device, int world_rank)
    : comm_(comm), device_(device), world_rank_(world_rank), timeout_s_(comm_timeout_seconds()) {
  init_after_comm();
}

void NcclCommunicator::init_after_comm() {
  ncclResult_t rc = ncclCommUserRank(comm_, &rank_);
  if (rc == ncclSuccess) rc = ncclCommCount(comm_, &size_);
  if (rc != ncclSuccess) abort_with("init", "failed: " + nccl_describe(comm_, rc));
  try {
    G4_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    G4_CUDA_CHECK(cudaMalloc(&scratch_, 8));
    G4_CUDA_CHECK(cudaMemset(scratch_, 0, 8));
  } catch (...) {
    // The destructor of a half-built object does not run: give everything back here.
    if (scratch_ != nullptr) cudaFree(scratch_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    ncclCommAbort(comm_);
    throw;
  }
}

NcclCommunicator::~NcclCommunicator() {
  // Never throws. At process exit the CUDA runtime may already be unloading: then only the driver's own
  // teardown remains, and no NCCL call is made.
  const bool cuda_alive = cudaSetDevice(device_) == cudaSuccess;
  if (comm_ != nullptr && !aborted_ && cuda_alive) {
    const bool clean = enqueue_ok(ncclCommFinalize(comm_)) && nccl_wait(comm_, nullptr, timeout_s_).empty();
    if (clean)
      ncclCommDestroy(comm_);
    else
      ncclCommAbort(comm_);
  }
  if (cuda_alive) {
    if (scratch_ != nullptr) cudaFree(scratch_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }
}

void NcclCommunicator::abort_with(const char* what, const std::string& why) {
  if (comm_ != nullptr && !aborted_) ncclCommAbort(comm_);
  aborted_ = true;
  fail("rank ", world_rank_, ": NCCL ", what, " ", why, "; the NCCL communicator was aborted");
}

void NcclCommunicator::begin(const char* what) {
  check(!aborted_, "rank ", world_rank_, ": NCCL ", what,
        ": this NCCL communicator was aborted after an earlier failure");
  G4_CUDA_CHECK(cudaSetDevice(device_));
}

void NcclCommunicator::finish(int rc, const char* what) {
  const auto result = static_cast<ncclResult_t>(rc);
  if (!enqueue_ok(result)) abort_with(what, "failed: " + nccl_describe(comm_, result));
  if (const std::string why = nccl_wait(comm_, stream_, timeout_s_); !why.empty()) abort_with(what, why);
}

void NcclCommunicator::check_device_pointer(const void* p, std::size_t bytes, const char* what) const {
  if (bytes == 0) return;
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    cudaGetLastError();
    a.type = cudaMemoryTypeUnregistered;
  }
  check(a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged, "rank ", world_rank_, ": NCCL ",
        what, ": a buffer is host memory; the NCCL communicator takes device buffers only");
  check(a.type != cudaMemoryTypeDevice || a.device == device_, "rank ", world_rank_, ": NCCL ", what,
        ": a buffer is on device ", a.device, ", not on this rank's device ", device_);
}

void NcclCommunicator::barrier() {
  begin("barrier");
  finish(ncclAllReduce(scratch_, scratch_, 1, ncclInt64, ncclSum, comm_, stream_), "barrier");
}

void NcclCommunicator::broadcast(void* data, std::size_t bytes, int root) {
  begin("broadcast");
  check(root >= 0 && root < size_, "NCCL broadcast: root ", root, " of ", size_, " ranks");
  if (bytes == 0) return;
  check_device_pointer(data, bytes, "broadcast");
  finish(ncclBroadcast(data, data, bytes, ncclUint8, root, comm_, stream_), "broadcast");
}

void NcclCommunicator::all_reduce_sum(void* data, std::size_t count, ReduceType type) {
  begin("all_reduce");
  if (count == 0) return;
  check_device_pointer(data, count * element_bytes(type), "all_reduce");
  finish(ncclAllReduce(data, data, count, nccl_type(type), ncclSum, comm_, stream_), "all_reduce");
}

void NcclCommunicator::reduce_scatter_sum(const void* data, void* recv,
                                          const std::vector<std::size_t>& counts, ReduceType type) {
  begin("reduce_scatter");
  check(counts.size() == static_cast<std::size_t>(size_), "reduce_scatter_sum: one count per rank expected");
  const std::size_t total = std::accumulate(counts.begin(), counts.end(), std::size_t{0});
  const std::size_t elt = element_bytes(type);
  check_device_pointer(data, total * elt, "reduce_scatter");
  check_device_pointer(recv, counts[rank_] * elt, "reduce_scatter");
  if (total == 0) return;
  const ncclDataType_t t = nccl_type(type);
  if (std::all_of(counts.begin(), counts.end(), [&](std::size_t c) { return c == counts[0]; })) {
    finish(ncclReduceScatter(data, recv, counts[0], t, ncclSum, comm_, stream_), "reduce_scatter");
    return;
  }
  // Unequal blocks: block r reduced to rank r. recvbuff is read by NCCL on the root only; the others pass a
  // valid device pointer anyway.
  const std::vector<std::size_t> at = offsets(counts);
  const auto* base = static_cast<const char*>(data);
  void* any_device = recv != nullptr ? recv : const_cast<void*>(data);
  finish(in_group([&] {
           FirstFailure first;
           for (int r = 0; r < size_; ++r)
             if (counts[r] != 0)
               first(ncclReduce(base + at[r] * elt, r == rank_ ? recv : any_device, counts[r], t, ncclSum, r,
                                comm_, stream_));
           return first.rc;
         }),
         "reduce_scatter");
}

void NcclCommunicator::all_gather(const void* send, std::size_t bytes, void* recv) {
  begin("all_gather");
  if (bytes == 0) return;
  check_device_pointer(send, bytes, "all_gather");
  check_device_pointer(recv, bytes, "all_gather");
  finish(ncclAllGather(send, recv, bytes, ncclUint8, comm_, stream_), "all_gather");
}

void NcclCommunicator::all_gather_v(const void* send, std::size_t send_bytes, void* recv,
                                    const std::vector<std::size_t>& recv_bytes) {
  begin("all_gather_v");
  check(recv_bytes.size() == static_cast<std::size_t>(size_) && recv_bytes[rank_] == send_bytes,
        "all_gather_v: this rank's size disagrees with the receive sizes");
  const std::vector<std::size_t> at = offsets(recv_bytes);
  const std::size_t total = at.empty() ? 0 : at.back() + recv_bytes.back();
  if (total == 0) return;
  check_device_pointer(send, send_bytes, "all_gather_v");
  check_device_pointer(recv, total, "all_gather_v");
  auto* out = static_cast<char*>(recv);
  finish(in_group([&] {
           FirstFailure first;
           for (int r = 0; r < size_; ++r)
             if (recv_bytes[r] != 0)
               first(ncclBroadcast(r == rank_ ? send : out + at[r], out + at[r], recv_bytes[r], ncclUint8, r,
                                   comm_, stream_));
           return first.rc;
         }),
         "all_gather_v");
}

void NcclCommunicator::all_to_all_v(const void* send, const std::vector<std::size_t>& send_bytes, void* recv,
                                    const std::vector<std::size_t>& recv_bytes) {
  begin("all_to_all_v");
  check(send_bytes.size() == static_cast<std::size_t>(size_) && recv_bytes.size() == send_bytes.size(),
        "all_to_all_v: one size per rank expected");
  const std::vector<std::size_t> sat = offsets(send_bytes), rat = offsets(recv_bytes);
  const std::size_t send_total = sat.back() + send_bytes.back(), recv_total = rat.back() + recv_bytes.back();
  if (send_total == 0 && recv_total == 0) return;  // every peer skips its matching zero-length sends too
  check_device_pointer(send, send_total, "all_to_all_v");
  check_device_pointer(recv, recv_total, "all_to_all_v");
  const auto* in = static_cast<const char*>(send);
  auto* out = static_cast<char*>(recv);
  finish(in_group([&] {
           FirstFailure first;
           for (int peer = 0; peer < size_; ++peer) {
             if (send_bytes[peer] != 0)
               first(ncclSend(in + sat[peer], send_bytes[peer], ncclUint8, peer, comm_, stream_));
             if (recv_bytes[peer] != 0)
               first(ncclRecv(out + rat[peer], recv_bytes[peer], ncclUint8, peer, comm_, stream_));
           }
           return first.rc;
         }),
         "all_to_all_v");
}

std::unique_ptr<Communicator> NcclCommunicator::split(int color, int key) {
  begin("comm_split");
  check(color >= 0, "NCCL split: color must be >= 0, got ", color);
  ncclConfig_t config = nonblocking_config();
  ncclComm_t child = nullptr;
  const ncclResult_t rc = ncclCommSplit(comm_, color, key, &child, &config);
  std::string why = enqueue_ok(rc) ? "" : "failed: " + nccl_describe(comm_, rc);
  if (why.empty() && child != nullptr) why = nccl_wait(child, nullptr, timeout_s_);
  if (why.empty()) why = nccl_wait(comm_, nullptr, timeout_s_);
  if (why.empty() && child == nullptr) why = "failed: ncclCommSplit returned no communicator";
  if (!why.empty()) {
    if (child != nullptr) ncclCommAbort(child);
    abort_with("comm_split", why);
  }
  return std::unique_ptr<Communicator>(new NcclCommunicator(child, device_, world_rank_));
}

}  // namespace g4
