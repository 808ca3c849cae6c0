// rms_norm.h: Gemma 4's RMSNorm: y = x · (mean(x²) + eps)^-0.5 · w, with a plain weight (no "+1").
//
// Rows are normalised independently over the last `dim` elements. `weight` may be null (the weightless
// norms: v_norm, the router's norm). The mean of squares is accumulated in double.
#pragma once

#include <cstdint>

namespace g4 {

void rms_norm_forward(const float* x, const float* weight, float* y, std::int64_t rows, std::int64_t dim,
                      float eps);

// Backward of rms_norm_forward: dx is overwritten; dweight (when both it and weight are non-null) accumulates
// (+=) the sum over rows of dy · x̂. x is the forward input.
void rms_norm_backward(const float* x, const float* weight, const float* dy, float* dx, float* dweight,
                       std::int64_t rows, std::int64_t dim, float eps);

}  // namespace g4
