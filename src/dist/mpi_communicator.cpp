// mpi_communicator.cpp: the Communicator over MPI (built only when CMake found MPI; G4MOE_HAVE_MPI).
//
// Errors: MPI_ERRORS_RETURN on every communicator, so a failing call becomes a one-line g4::Error instead of
// MPI's default abort; every blocking call runs under a WatchdogScope, so a peer that died (which
// shared-memory transports never report) ends this process with exit code 2 after G4_COMM_TIMEOUT_S seconds.
// SIGTERM (what mpirun sends the surviving ranks when one dies) prints one error line and exits 2. After any
// failure no MPI call is made again (MPI_Finalize could block on the dead peer). The C API only: OpenMPI's
// mpi.h would otherwise pull in the deprecated C++ bindings (libmpi_cxx).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <csignal>
#include <cstring>
#include <string>

#include "core/error.h"
#include "dist/communicator.h"
#include "dist/mpi_world_communicator.h"
#include "dist/watchdog.h"

namespace g4 {

namespace {

std::atomic<bool> g_failed{false};
volatile std::sig_atomic_t g_exiting = 0;  // the process is past main: it has said what it had to say
int g_world_rank = 0;

MPI_Datatype mpi_type(ReduceType t) {
  switch (t) {
    case ReduceType::f32:
      return MPI_FLOAT;
    case ReduceType::f64:
      return MPI_DOUBLE;
    case ReduceType::i64:
      return MPI_INT64_T;
  }
  return MPI_BYTE;
}

void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  g_failed = true;
  char msg[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  fail("rank ", g_world_rank, ": MPI ", what, " failed: ", std::string(msg, static_cast<std::size_t>(len)),
       " (another rank probably died)");
}

int as_int(std::size_t bytes, const char* what) {
  check(bytes <= static_cast<std::size_t>(INT_MAX), what, ": ", bytes, " bytes exceed MPI's int count");
  return static_cast<int>(bytes);
}

std::vector<int> displacements(const std::vector<int>& counts, const char* what) {
  std::vector<int> d(counts.size());
  std::size_t at = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    d[i] = as_int(at, what);
    at += static_cast<std::size_t>(counts[i]);
  }
  as_int(at, what);
  return d;
}

std::vector<int> int_counts(const std::vector<std::size_t>& bytes, const char* what) {
  std::vector<int> c(bytes.size());
  for (std::size_t i = 0; i < bytes.size(); ++i) c[i] = as_int(bytes[i], what);
  return c;
}

void on_sigterm(int) {
  // Async-signal-safe: one write, then _exit. A rank already exiting (it printed its own error, if any, and
  // waits in MPI_Finalize for a peer) leaves quietly: one clear line per cause.
  static const char msg[] =
      "g4moe: error: terminated by the MPI launcher (SIGTERM), probably because another rank failed\n";
  if (!g_exiting) {
    ssize_t ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
  }
  _exit(2);
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, bool owned) : comm_(comm), owned_(owned) {
    check_mpi(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "Comm_set_errhandler");
    check_mpi(MPI_Comm_rank(comm_, &rank_), "Comm_rank");
    check_mpi(MPI_Comm_size(comm_, &size_), "Comm_size");
  }
  ~MpiCommunicator() override {
    if (owned_ && !g_failed) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void barrier() override {
    WatchdogScope w("MPI barrier", g_world_rank);
    check_mpi(MPI_Barrier(comm_), "barrier");
  }
  void broadcast(void* data, std::size_t bytes, int root) override {
    WatchdogScope w("MPI broadcast", g_world_rank);
    check_mpi(MPI_Bcast(data, as_int(bytes, "broadcast"), MPI_BYTE, root, comm_), "broadcast");
  }
  void all_reduce_sum(void* data, std::size_t count, ReduceType type) override {
    WatchdogScope w("MPI all_reduce", g_world_rank);
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, data, as_int(count, "all_reduce"), mpi_type(type), MPI_SUM, comm_),
              "all_reduce");
  }
  void reduce_scatter_sum(const void* data, void* recv, const std::vector<std::size_t>& counts,
                          ReduceType type) override {
    check(counts.size() == static_cast<std::size_t>(size_),
          "reduce_scatter_sum: one count per rank expected");
    const std::vector<int> c = int_counts(counts, "reduce_scatter");
    WatchdogScope w("MPI reduce_scatter", g_world_rank);
    check_mpi(MPI_Reduce_scatter(data, recv, c.data(), mpi_type(type), MPI_SUM, comm_), "reduce_scatter");
  }
  void all_gather(const void* send, std::size_t bytes, void* recv) override {
    WatchdogScope w("MPI all_gather", g_world_rank);
    const int n = as_int(bytes, "all_gather");
    check_mpi(MPI_Allgather(send, n, MPI_BYTE, recv, n, MPI_BYTE, comm_), "all_gather");
  }
  void all_gather_v(const void* send, std::size_t send_bytes, void* recv,
                    const std::vector<std::size_t>& recv_bytes) override {
    check(recv_bytes.size() == static_cast<std::size_t>(size_) && recv_bytes[rank_] == send_bytes,
          "all_gather_v: this rank's size disagrees with the receive sizes");
    const std::vector<int> counts = int_counts(recv_bytes, "all_gather_v");
    const std::vector<int> displs = displacements(counts, "all_gather_v");
    WatchdogScope w("MPI all_gather_v", g_world_rank);
    check_mpi(MPI_Allgatherv(send, as_int(send_bytes, "all_gather_v"), MPI_BYTE, recv, counts.data(),
                             displs.data(), MPI_BYTE, comm_),
              "all_gather_v");
  }
  void all_to_all_v(const void* send, const std::vector<std::size_t>& send_bytes, void* recv,
                    const std::vector<std::size_t>& recv_bytes) override {
    check(send_bytes.size() == static_cast<std::size_t>(size_) && recv_bytes.size() == send_bytes.size(),
          "all_to_all_v: one size per rank expected");
    const std::vector<int> sc = int_counts(send_bytes, "all_to_all_v"),
                           rc = int_counts(recv_bytes, "all_to_all_v");
    const std::vector<int> sd = displacements(sc, "all_to_all_v"), rd = displacements(rc, "all_to_all_v");
    WatchdogScope w("MPI all_to_all_v", g_world_rank);
    check_mpi(
        MPI_Alltoallv(send, sc.data(), sd.data(), MPI_BYTE, recv, rc.data(), rd.data(), MPI_BYTE, comm_),
        "all_to_all_v");
  }
  std::unique_ptr<Communicator> split(int color, int key) override {
    MPI_Comm out = MPI_COMM_NULL;
    {
      WatchdogScope w("MPI comm_split", g_world_rank);
      check_mpi(MPI_Comm_split(comm_, color, key, &out), "comm_split");
    }
    return std::make_unique<MpiCommunicator>(out, true);
  }

 private:
  MPI_Comm comm_;
  bool owned_;
  int rank_ = 0, size_ = 1;
};

// The world: MPI_Init on construction, MPI_Finalize on destruction unless a collective failed. Finalize is
// not watched: it may wait as long as rank 0 takes to write its outputs after the last collective (a dead
// peer makes mpirun end the job anyway).
class MpiWorld final {
 public:
  MpiWorld() {
    int provided = 0;
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) == MPI_SUCCESS,
          "MPI_Init failed");
    MPI_Comm_rank(MPI_COMM_WORLD, &g_world_rank);
    comm = std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, false);
    std::signal(SIGTERM, on_sigterm);
  }
  ~MpiWorld() {
    g_exiting = 1;
    comm.reset();
    if (g_failed) return;
    MPI_Finalize();
  }
  std::unique_ptr<MpiCommunicator> comm;
};

}  // namespace

Communicator& mpi_world_communicator() {
  static MpiWorld world;
  return *world.comm;
}

}  // namespace g4
