#include "dist/process_groups.h"

#include "core/error.h"

namespace g4 {

ProcessGroups make_process_groups(Communicator& world, int ep_size) {
  check(ep_size >= 1, "expert-parallel size must be at least 1, got ", ep_size);
  check(world.size() % ep_size == 0, "expert-parallel size ", ep_size, " does not divide the ", world.size(),
        " ranks of this job");
  ProcessGroups g;
  g.world = &world;
  g.ep_size = ep_size;
  g.dp_size = world.size() / ep_size;
  g.ep_rank = world.rank() % ep_size;
  g.dp_rank = world.rank() / ep_size;
  g.ep = world.split(g.dp_rank, g.ep_rank);
  g.dp = world.split(g.ep_rank, g.dp_rank);
  return g;
}

}  // namespace g4
