// nccl_communicator.h: the Communicator over NCCL, for buffers in GPU memory (built only when CMake found
// CUDA and NCCL: G4MOE_HAVE_NCCL, library g4nccl).
//
// Invariants:
// - DEVICE BUFFERS: every data pointer passed to a collective is device memory of this communicator's GPU
//   (or managed memory); a host pointer is a g4::Error naming the collective, before anything is sent. The
//   host-memory helper Communicator::all_gather_i64 is therefore not usable here (use the bootstrap).
// - One GPU per rank: the constructor picks device (local rank mod device count), where the local rank is
//   the number of lower bootstrap ranks on the same host (gethostname); with CUDA_VISIBLE_DEVICES narrowing
//   a rank to one GPU, that is device 0. The constructor and every collective make that device current on
//   the calling thread.
// - One stream, synchronous at return: every collective is enqueued on this communicator's own stream
//   (created non-blocking) and has completed when the call returns, so any stream may read the outputs.
//   Inputs must be complete when the call starts: work on another stream that writes them must have been
//   synchronised by the caller (e.g. CudaContext::synchronize()).
// - Never a hang: the communicator is non-blocking (ncclConfig_t::blocking = 0); initialisation, split and
//   every collective are polled (ncclCommGetAsyncError, cudaStreamQuery) for at most G4_COMM_TIMEOUT_S
//   seconds (default 60, read when the communicator is made, split included). A NCCL or CUDA error or the
//   timeout aborts the communicator (ncclCommAbort) and throws a one-line g4::Error `rank R: NCCL <op>
//   ...`; after that every call on it throws. (The bootstrap's own collectives keep the MPI watchdog.)
// - Sizes as in communicator.h: bytes, except element counts for the reductions. Zero-length blocks are
//   legal everywhere; they are skipped (consistently on every rank, since every rank knows all sizes).
// - Collective construction: every rank of `bootstrap` constructs its NcclCommunicator together (rank 0
//   makes the ncclUniqueId and broadcasts it over the bootstrap); rank and size equal the bootstrap's.
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <string>

#include "dist/communicator.h"

struct ncclComm;  // nccl.h: typedef struct ncclComm* ncclComm_t (kept out of this header)

namespace g4 {

class NcclCommunicator final : public Communicator {
 public:
  // Collective over `bootstrap`, a host communicator (MPI's world, or the one-rank communicator).
  explicit NcclCommunicator(Communicator& bootstrap);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  double timeout_seconds() const { return timeout_s_; }

  // A one-element all-reduce on a scratch buffer of this communicator.
  void barrier() override;
  void broadcast(void* data, std::size_t bytes, int root) override;
  void all_reduce_sum(void* data, std::size_t count, ReduceType type) override;
  using Communicator::all_reduce_sum;  // the typed overloads
  // ncclReduceScatter when every count is equal; otherwise one ncclReduce per rank block (root = the block's
  // rank) in one group: the same result, with about the bytes per rank of a ring reduce-scatter.
  void reduce_scatter_sum(const void* data, void* recv, const std::vector<std::size_t>& counts,
                          ReduceType type) override;
  void all_gather(const void* send, std::size_t bytes, void* recv) override;
  // One ncclBroadcast per rank (root r, into r's block of recv) in one group.
  void all_gather_v(const void* send, std::size_t send_bytes, void* recv,
                    const std::vector<std::size_t>& recv_bytes) override;
  // ncclSend/ncclRecv to and from every rank (itself included) in one group.
  void all_to_all_v(const void* send, const std::vector<std::size_t>& send_bytes, void* recv,
                    const std::vector<std::size_t>& recv_bytes) override;
  // ncclCommSplit: same device, a stream of its own. color must be >= 0.
  std::unique_ptr<Communicator> split(int color, int key) override;

 private:
  NcclCommunicator(ncclComm* comm, int device, int world_rank);  // owns `comm`, new and ready
  void init_after_comm();        // stream, scratch, rank and size; aborts comm_ on failure
  void begin(const char* what);  // not aborted; this device current
  void check_device_pointer(const void* p, std::size_t bytes, const char* what) const;
  // `rc` is what the enqueue (or ncclGroupEnd) returned, an ncclResult_t; then waits for the stream.
  void finish(int rc, const char* what);
  [[noreturn]] void abort_with(const char* what, const std::string& why);

  ncclComm* comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  void* scratch_ = nullptr;  // 8 bytes of device memory for barrier()
  int rank_ = 0, size_ = 1, device_ = 0;
  int world_rank_ = 0;  // the bootstrap rank, for messages
  double timeout_s_ = 60.0;
  bool aborted_ = false;
};

}  // namespace g4
