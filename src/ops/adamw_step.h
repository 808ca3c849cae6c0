// adamw_step.h: AdamW's hyper-parameters, the constants of one step, and one element's update: the arithmetic
// both backends' AdamW kernels call (host and device, core/host_device.h).
#pragma once

#include <cmath>
#include <cstdint>

#include "core/host_device.h"

namespace g4 {

struct AdamWHyper {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

// The per-step constants of the update above (step t counted from 1).
struct AdamWStepConstants {
  double b1, b2, step_size, bc2_sqrt, decay, eps;
};
AdamWStepConstants adamw_step_constants(const AdamWHyper& hyper, std::int64_t step, double lr);

// One element's update in place (the CPU and the CUDA kernels both call it).
G4_HOST_DEVICE inline void adamw_element(float& w, float g, float& m, float& v, const AdamWStepConstants& k) {
  const double gi = g;
  const double mi = k.b1 * m + (1.0 - k.b1) * gi;
  const double vi = k.b2 * v + (1.0 - k.b2) * gi * gi;
  m = static_cast<float>(mi);
  v = static_cast<float>(vi);
  const double wi = static_cast<double>(w) * k.decay;
  w = static_cast<float>(wi - k.step_size * mi / (std::sqrt(vi) / k.bc2_sqrt + k.eps));
}

// The update of n consecutive elements in place.

}  // namespace g4
