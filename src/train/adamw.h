// adamw.h: AdamW with decoupled weight decay and bias correction, as torch.optim.AdamW computes it:
//   p ← p · (1 − lr·wd);  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;
//   p ← p − (lr / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + eps)
// Master weights and both moments are fp32; each element's update is evaluated in double and rounded once.
// Invariant: state tensors are created on the first step and keep the parameter's shape; parameters are
// identified by name, so the state survives a reordering of the list (and is what a checkpoint saves).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace g4 {

struct AdamWConfig {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

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

// The per-step constants of the update above (step t = `step`, counted from 1).
struct AdamWStepConstants {
  double b1, b2, step_size, bc2_sqrt, decay, eps;
};
AdamWStepConstants adamw_step_constants(const AdamWConfig& config, std::int64_t step, double lr);
// The update of n consecutive elements in place (what AdamW::step does to each parameter): sharded optimizers
// (ZeRO-1) call it on their slices and get the same bits per element.
void adamw_update(float* w, const float* g, float* m, float* v, std::int64_t n, const AdamWStepConstants& k);

// sqrt(Σ g²) over all gradients (double accumulation).
double global_grad_norm(const std::vector<ParamRef>& params);
// Scales every gradient by max_norm / norm when norm > max_norm (torch.nn.utils.clip_grad_norm_ semantics,
// without its 1e-6 epsilon). Returns the norm before clipping. Needs non-const gradients.
double clip_grad_norm(const std::vector<Tensor*>& grads, double max_norm);

}  // namespace g4
