#include "ops/adamw_step.h"

#include <cmath>

namespace g4 {

AdamWStepConstants adamw_step_constants(const AdamWHyper& h, std::int64_t step, double lr) {
  const double bc1 = 1.0 - std::pow(h.beta1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(h.beta2, static_cast<double>(step));
  return {h.beta1, h.beta2, lr / bc1, std::sqrt(bc2), 1.0 - lr * h.weight_decay, h.eps};
}

}  // namespace g4
