// adamw.h: the CPU kernels of the optimizer ops (ops/ops.h): AdamW's element update and the sum of squares
// a gradient-norm clip needs.
//
// AdamW as torch.optim.AdamW computes it, for step t with learning rate lr:
//   p ← p · (1 − lr·wd);  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;
//   p ← p − (lr / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + eps)
// Master weights and both moments are fp32; each element's update is evaluated in double and rounded once, so
// results do not depend on the thread count or on how the elements are split (ZeRO-1 slices).
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
void adamw_update(float* w, const float* g, float* m, float* v, std::int64_t n, const AdamWStepConstants& k);

// Σ x² over n elements, accumulated in double.
double sum_of_squares(const float* x, std::int64_t n);

}  // namespace g4
