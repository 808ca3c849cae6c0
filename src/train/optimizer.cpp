#include "train/optimizer.h"

#include <cstdio>

#include "train/zero_optimizer.h"

namespace g4 {

namespace {

// parallel.zero = 0: every rank holds every moment of its parameters and updates them after an all-reduce.
class ReplicatedAdamW final : public Optimizer {
 public:
  ReplicatedAdamW(const TrainParallel& par, AdamW adamw) : par_(par), adamw_(std::move(adamw)) {}
  void reduce_gradients(const std::vector<ParamRef>& params) override {
    std::vector<Tensor*> grads;
    for (const ParamRef& p : params) grads.push_back(const_cast<Tensor*>(p.grad));
    sum_gradients(par_, grads);
  }
  double clip_grad_norm(const std::vector<ParamRef>& params, double max_norm) override {
    return clip_grad_norm_parallel(par_, params, max_norm);
  }
  void step(const std::vector<ParamRef>& params, double lr) override { adamw_.step(params, lr); }
  AdamW moments(const std::vector<ParamRef>&) override { return adamw_; }

 private:
  const TrainParallel& par_;
  AdamW adamw_;
};

// parallel.zero = 1: each replica owns a block of every tensor's moments (train/zero_optimizer.h).
class ShardedAdamW final : public Optimizer {
 public:
  ShardedAdamW(const TrainParallel& par, AdamW& resumed, const std::vector<ParamRef>& params)
      : par_(par), zero_(*par.setup.groups.dp, resumed.config()) {
    zero_.load(resumed, params);
    std::int64_t all = 0;
    for (const ParamRef& p : params) all += p.param->numel();
    if (par.root())  // rank 0 owns the largest blocks
      std::fprintf(stderr,
                   "g4moe train: ZeRO-1 over %d data-parallel replicas: AdamW moments %.2f MB on rank 0 "
                   "instead of %.2f MB\n",
                   par.setup.groups.dp_size, 8e-6 * static_cast<double>(zero_.owned_elements(params)),
                   8e-6 * static_cast<double>(all));
  }
  void reduce_gradients(const std::vector<ParamRef>& params) override { zero_.reduce_gradients(params); }
  double clip_grad_norm(const std::vector<ParamRef>& params, double max_norm) override {
    return zero_.clip_grad_norm(params, max_norm, par_.setup.groups.ep.get());
  }
  void step(const std::vector<ParamRef>& params, double lr) override { zero_.step(params, lr); }
  AdamW moments(const std::vector<ParamRef>& params) override { return zero_.gathered(params); }

 private:
  const TrainParallel& par_;
  ZeroOptimizer zero_;
};

}  // namespace

std::unique_ptr<Optimizer> make_optimizer(const TrainParallel& par, std::int64_t zero_stage, AdamW resumed,
                                          const std::vector<ParamRef>& params) {
  if (zero_stage == 1) return std::make_unique<ShardedAdamW>(par, resumed, params);
  return std::make_unique<ReplicatedAdamW>(par, std::move(resumed));
}

}  // namespace g4
