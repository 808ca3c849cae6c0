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

#include "ops/adamw_step.h"

namespace g4 {

void adamw_update(float* w, const float* g, float* m, float* v, std::int64_t n, const AdamWStepConstants& k);

// Σ x² over n elements, accumulated in double.
double sum_of_squares(const float* x, std::int64_t n);

}  // namespace g4
