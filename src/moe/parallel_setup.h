// parallel_setup.h: how a job of N ranks runs a MoE model: EP groups of `ep` consecutive ranks, each rank
// holding a contiguous block of experts, and N/ep data-parallel replicas (dist/process_groups.h). The ranks
// of one EP group share their batch rows (the dense part of the model runs replicated over the group; the MoE
// blocks split the tokens among the group, MoeParallel::replicated_tokens), so data-parallel gradients are
// summed over the DP group only, replicated and expert tensors alike.
//
// Invariants after make_parallel_setup: num_experts % ep == 0 (the issue asks for a clear error otherwise,
// although expert_range handles remainders), world size % ep == 0; with ep == 1 the experts range is empty
// (all experts) and the dispatcher is in-process, so the model runs exactly as in one process.
#pragma once

#include <memory>
#include "dist/process_groups.h"
#include "moe/state_dict_adapter.h"

#include "moe/dispatcher.h"

namespace g4 {

struct ParallelSetup {
  ProcessGroups groups;
  MoeParallel moe;      // moe.ep == groups.ep.get(), moe.replicated_tokens
  ExpertRange experts;  // this rank's experts (moe.experts); count 0 when ep == 1
  // What to install into the model: a GroupDispatcher over `moe` when ep > 1, else an InProcessDispatcher.
  std::shared_ptr<const Dispatcher<float>> dispatcher;
};

// num_experts 0: a dense model (then ep must be 1). Collective over `world` (it splits communicators).
ParallelSetup make_parallel_setup(Communicator& world, std::int64_t num_experts, int ep,
                                  DispatcherKind dispatcher);

}  // namespace g4
