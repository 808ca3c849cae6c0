#include "ops/cpu/rms_norm.h"

#include <cmath>

namespace g4 {

void rms_norm_forward(const float* x, const float* weight, float* y, std::int64_t rows, std::int64_t dim,
                      float eps) {
#pragma omp parallel for schedule(static) if (rows * dim > 65536)
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    double sum = 0;
    for (std::int64_t i = 0; i < dim; ++i) sum += static_cast<double>(xr[i]) * xr[i];
    const double inv = 1.0 / std::sqrt(sum / static_cast<double>(dim) + static_cast<double>(eps));
    for (std::int64_t i = 0; i < dim; ++i) {
      const double v = xr[i] * inv;
      yr[i] = static_cast<float>(weight ? v * weight[i] : v);
    }
  }
}

}  // namespace g4
