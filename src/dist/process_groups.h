// process_groups.h: the world split into expert-parallel (EP) and data-parallel (DP) groups, EP innermost
// (the note's §7.4): world rank = dp_rank · ep_size + ep_rank, so each EP group is a run of ep_size
// consecutive ranks, and the DP group of a rank holds the ranks with the same ep_rank (its EP replicas).
//
// Invariants: world size = dp_size · ep_size; ep->rank() == ep_rank, dp->rank() == dp_rank.
#pragma once

#include <memory>

#include "dist/communicator.h"

namespace g4 {

struct ProcessGroups {
  Communicator* world = nullptr;     // not owned
  std::unique_ptr<Communicator> ep;  // consecutive ranks [dp_rank·ep_size, (dp_rank+1)·ep_size)
  std::unique_ptr<Communicator> dp;  // ranks ep_rank, ep_rank + ep_size, ...
  int ep_size = 1, ep_rank = 0, dp_size = 1, dp_rank = 0;
};

// g4::Error unless ep_size ≥ 1 divides world.size().
ProcessGroups make_process_groups(Communicator& world, int ep_size);

}  // namespace g4
