#include "moe/parallel_setup.h"

#include "core/error.h"

namespace g4 {

ParallelSetup make_parallel_setup(Communicator& world, std::int64_t num_experts, int ep,
                                  DispatcherKind dispatcher) {
  check(ep >= 1, "--ep must be at least 1, got ", ep);
  check(ep == 1 || num_experts > 0, "expert parallelism (--ep ", ep,
        ") needs a MoE model; this one has no experts");
  check(num_experts == 0 || num_experts % ep == 0, "the model's ", num_experts,
        " experts are not divisible by the expert-parallel size ", ep);
  check(world.size() % ep == 0, "the expert-parallel size ", ep, " does not divide the ", world.size(),
        " ranks of this job");
  ParallelSetup s;
  s.groups = make_process_groups(world, ep);
  s.moe = make_moe_parallel(*s.groups.ep, dispatcher, /*replicated_tokens=*/true, num_experts);
  if (ep > 1) {
    s.experts = s.moe.experts;
    s.dispatcher = std::make_shared<GroupDispatcher<float>>(s.moe);
  } else {
    s.dispatcher = std::make_shared<InProcessDispatcher<float>>();
  }
  return s;
}

}  // namespace g4
