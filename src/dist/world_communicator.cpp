// world_communicator.cpp: which communicator a process gets: MPI's world under mpirun (MPI builds), else one
// rank.
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "dist/communicator.h"
#ifdef G4MOE_HAVE_MPI
#include "dist/mpi_world_communicator.h"
#endif

namespace g4 {

namespace {

long launcher_world_size() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"})
    if (const char* v = std::getenv(var)) return std::strtol(v, nullptr, 10);
  return 0;
}

}  // namespace

bool launched_by_mpi() {
  return launcher_world_size() > 0;
}

Communicator& world_communicator() {
#ifdef G4MOE_HAVE_MPI
  if (launched_by_mpi()) return mpi_world_communicator();
#else
  check(launcher_world_size() <= 1, "this g4moe was built without MPI, so it cannot run as one of ",
        launcher_world_size(), " MPI ranks (install libopenmpi-dev and rebuild)");
#endif
  static std::unique_ptr<Communicator> single = make_single_communicator();
  return *single;
}

void test_kill_point() {
  static const char* kill_rank = std::getenv("G4_TEST_KILL_RANK");
  static const char* stall_rank = std::getenv("G4_TEST_STALL_RANK");
  if (kill_rank && *kill_rank && std::strtol(kill_rank, nullptr, 10) == world_communicator().rank())
    std::raise(SIGKILL);
  if (stall_rank && *stall_rank && std::strtol(stall_rank, nullptr, 10) == world_communicator().rank())
    for (;;) pause();
}

}  // namespace g4
