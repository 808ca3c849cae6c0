// rms_norm.h: Gemma 4's RMSNorm: y = x · (mean(x²) + eps)^-0.5 · w, with a plain weight (no "+1").
//
// Rows are normalised independently over the last `dim` elements. `weight` may be null (the weightless
// norms: v_norm, the router's norm). The mean of squares is accumulated in double.
#pragma once

#include <cstdint>

namespace g4 {

void rms_norm_forward(const float* x, const float* weight, float* y, std::int64_t rows, std::int64_t dim,
                      float eps);

}  // namespace g4
