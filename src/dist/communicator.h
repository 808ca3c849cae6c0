// communicator.h: the collectives g4moe's parallel code uses, behind one interface (MPI on the CPU; a
// one-rank implementation needs no MPI at all).
//
// Invariants: every rank of a communicator calls the same collectives in the same order with matching sizes
// (byte counts agree between sender and receiver); buffers are host memory. Sizes are in bytes except for
// all_reduce_sum, whose count is in elements of `type`. A failed collective (a peer died, a timeout) is a
// g4::Error with a one-line message or, where the process cannot recover (a collective blocked past the
// timeout), the process prints `g4moe: error: ...` and exits with code 2; it never hangs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace g4 {

enum class ReduceType { f32, f64, i64 };

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  virtual void barrier() = 0;
  // `bytes` bytes of `data` from `root` to every rank (in place).
  virtual void broadcast(void* data, std::size_t bytes, int root) = 0;
  // Element-wise sum over ranks, in place; `count` elements of `type`.
  virtual void all_reduce_sum(void* data, std::size_t count, ReduceType type) = 0;
  // Element-wise sum over ranks of `data` (Σ counts[r] elements of `type`), of which rank r receives block r
  // (counts[r] elements, in rank order) into `recv`: the first step of a sharded (ZeRO-style) update.
  virtual void reduce_scatter_sum(const void* data, void* recv, const std::vector<std::size_t>& counts,
                                  ReduceType type) = 0;
  // Every rank sends `bytes` bytes; recv holds size()·bytes, rank r's block at r·bytes.
  virtual void all_gather(const void* send, std::size_t bytes, void* recv) = 0;
  // Variable length: rank r sends recv_bytes[r] bytes (send_bytes on the sender); recv holds them in rank
  // order.
  virtual void all_gather_v(const void* send, std::size_t send_bytes, void* recv,
                            const std::vector<std::size_t>& recv_bytes) = 0;
  // send holds size() consecutive blocks, block r (send_bytes[r] bytes) for rank r; recv receives block s
  // (recv_bytes[s] bytes) from rank s, in rank order. recv_bytes[s] must equal rank s's send_bytes[rank()].
  virtual void all_to_all_v(const void* send, const std::vector<std::size_t>& send_bytes, void* recv,
                            const std::vector<std::size_t>& recv_bytes) = 0;
  // Ranks with the same color form a new communicator, ordered by key (then by rank here).
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;

  // Typed conveniences.
  void all_reduce_sum(float* data, std::size_t n) { all_reduce_sum(data, n, ReduceType::f32); }
  void all_reduce_sum(double* data, std::size_t n) { all_reduce_sum(data, n, ReduceType::f64); }
  void all_reduce_sum(std::int64_t* data, std::size_t n) { all_reduce_sum(data, n, ReduceType::i64); }
  // One int64 per rank, gathered in rank order.
  std::vector<std::int64_t> all_gather_i64(std::int64_t value);
};

// The communicator of every process of this job: MPI's world when the process was started by mpirun (and
// g4moe was built with MPI), else a one-rank communicator. Created once; later calls return the same object.
Communicator& world_communicator();

// A communicator of one rank (rank 0 of 1): every collective is a copy or nothing.
std::unique_ptr<Communicator> make_single_communicator();

// Test hooks, called in the middle of the MoE dispatch: when G4_TEST_KILL_RANK names this process's world
// rank, the process dies at once (SIGKILL), as a crashed peer would; when G4_TEST_STALL_RANK does, it stops
// (sleeps forever), as a hung peer would, which only the other ranks' watchdogs can end.
void test_kill_point();

// True when this process was launched by an MPI launcher (mpirun sets OMPI_COMM_WORLD_SIZE / PMI_SIZE).
bool launched_by_mpi();

}  // namespace g4
