// adamw.h: the AdamW optimizer (torch.optim.AdamW's arithmetic: ops/adamw_step.h) over named parameters, and
// the global gradient norm and its clip.
// Invariant: state tensors are created on the first step, f32, with the parameter's shape and on its device;
// parameters are identified by name, so the state survives a reordering of the list (and is what a checkpoint
// saves).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "ops/adamw_step.h"

namespace g4 {

using AdamWConfig = AdamWHyper;

struct ParamRef {
  std::string name;
  Tensor* param = nullptr;       // F32, updated in place
  const Tensor* grad = nullptr;  // F32, same shape
};

class AdamW {
 public:
  explicit AdamW(AdamWConfig config = {}) : config_(config) {}

  // One step at learning rate `lr` over every parameter in `params` (frozen ones are simply not passed).
  void step(const std::vector<ParamRef>& params, double lr);

  std::int64_t steps() const { return steps_; }
  const AdamWConfig& config() const { return config_; }
  // Moments by parameter name: "exp_avg" and "exp_avg_sq" (torch's names), for checkpoints.
  std::map<std::string, std::pair<Tensor, Tensor>>& state() { return state_; }
  void set_steps(std::int64_t steps) { steps_ = steps; }

 private:
  AdamWConfig config_;
  std::int64_t steps_ = 0;
  std::map<std::string, std::pair<Tensor, Tensor>> state_;
};

// sqrt(Σ g²) over all gradients (double accumulation).
double global_grad_norm(const std::vector<ParamRef>& params);
// Scales every gradient by max_norm / norm when norm > max_norm (torch.nn.utils.clip_grad_norm_ semantics,
// without its 1e-6 epsilon). Returns the norm before clipping. Needs non-const gradients.
double clip_grad_norm(const std::vector<Tensor*>& grads, double max_norm);

}  // namespace g4
