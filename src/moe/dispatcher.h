// dispatcher.h: how the routed experts of a MoE block reach their tokens, as one interface. The model's MoE
// blocks call it; which version runs is decided outside the model (train/ and cli/ install
// ParallelSetup::dispatcher() into Gemma4Model), so the model never branches on parallelism.
//
// - InProcessDispatcher: every expert is here and runs over this rank's tokens (ops/cpu/moe_experts.h).
// - GroupDispatcher: the experts are spread over an expert-parallel group of Communicator ranks (MPI on the
//   CPU), tokens exchanged by all-gather or all-to-all (token_dispatcher.h); this rank holds the experts of
//   MoeParallel::experts only.
// The GPU version over NCCL (moe/nccl_alltoall_dispatcher.h) takes device buffers; it joins this interface
// when the model runs on CUDA.
//
// Invariants (all versions): cfg is the block's global config (num_experts = E); gate_and_up and down hold
// local_experts() only. forward overwrites y; backward overwrites dx and dweights and accumulates (+=) into
// the local experts' gradients. A collective() dispatcher must be called the same number of times, in the
// same order, on every rank of its group, also by a rank with no tokens.
#pragma once

#include <cstdint>

#include "core/error.h"

#include "moe/state_dict_adapter.h"
#include "moe/token_dispatcher.h"
#include "ops/cpu/moe_experts.h"

namespace g4 {

template <class T>
class Dispatcher {
 public:
  virtual ~Dispatcher() = default;
  // This rank's experts of a block with `num_experts` experts: global ids [start, start + count).
  virtual ExpertRange local_experts(std::int64_t num_experts) const = 0;
  virtual bool collective() const = 0;
  // x [T, H] expert input, token_mask [T] or nullptr, weights / indices [T, K] (global expert ids);
  // y [T, H].
  virtual void forward(const ExpertsConfig& cfg, const T* x, const std::uint8_t* token_mask, const T* weights,
                       const std::int64_t* indices, std::int64_t tokens, std::int64_t top_k,
                       const T* gate_and_up, const T* down, T* y, DispatchContext<T>* ctx) const = 0;
  // x: the forward's expert input; dy [T, H] -> dx [T, H], dweights [T, K].
  virtual void backward(const ExpertsConfig& cfg, const T* x, const T* gate_and_up, const T* down,
                        DispatchContext<T>& ctx, const T* dy, T* dx, T* dweights, T* dgate_and_up,
                        T* ddown) const = 0;
};

template <class T>
class InProcessDispatcher final : public Dispatcher<T> {
 public:
  ExpertRange local_experts(std::int64_t num_experts) const override { return {0, num_experts}; }
  bool collective() const override { return false; }
  void forward(const ExpertsConfig& cfg, const T* x, const std::uint8_t* token_mask, const T* weights,
               const std::int64_t* indices, std::int64_t tokens, std::int64_t top_k, const T* gate_and_up,
               const T* down, T* y, DispatchContext<T>* ctx) const override {
    moe_experts_forward<T>(cfg, x, token_mask, weights, indices, tokens, top_k, gate_and_up, down, y,
                           &ctx->experts);
  }
  void backward(const ExpertsConfig& cfg, const T* x, const T* gate_and_up, const T* down,
                DispatchContext<T>& ctx, const T* dy, T* dx, T* dweights, T* dgate_and_up,
                T* ddown) const override {
    moe_experts_backward<T>(cfg, x, gate_and_up, down, ctx.experts, dy, dx, dweights, dgate_and_up, ddown);
  }
};

template <class T>
class GroupDispatcher final : public Dispatcher<T> {
 public:
  explicit GroupDispatcher(const MoeParallel& parallel) : parallel_(parallel) {}
  ExpertRange local_experts(std::int64_t num_experts) const override {
    check(num_experts == parallel_.num_experts, "a MoE block of ", num_experts,
          " experts dispatched over an expert-parallel group set up for ", parallel_.num_experts);
    return parallel_.experts;
  }
  bool collective() const override { return true; }
  void forward(const ExpertsConfig& cfg, const T* x, const std::uint8_t* token_mask, const T* weights,
               const std::int64_t* indices, std::int64_t tokens, std::int64_t top_k, const T* gate_and_up,
               const T* down, T* y, DispatchContext<T>* ctx) const override {
    dispatched_experts_forward<T>(parallel_, cfg, x, token_mask, weights, indices, tokens, top_k, gate_and_up,
                                  down, y, ctx);
  }
  void backward(const ExpertsConfig& cfg, const T*, const T* gate_and_up, const T* down,
                DispatchContext<T>& ctx, const T* dy, T* dx, T* dweights, T* dgate_and_up,
                T* ddown) const override {
    dispatched_experts_backward<T>(parallel_, cfg, gate_and_up, down, ctx, dy, dx, dweights, dgate_and_up,
                                   ddown);
  }

 private:
  MoeParallel parallel_;  // its ranges were cut for one expert count, that of every MoE block of the model
};

}  // namespace g4
