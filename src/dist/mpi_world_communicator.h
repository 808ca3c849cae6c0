// mpi_world_communicator.h: MPI's world communicator (MPI_Init on first use, MPI_Finalize at exit); only in
// MPI builds.
#pragma once

#include "dist/communicator.h"

namespace g4 {

Communicator& mpi_world_communicator();

}  // namespace g4
