#include "ops/cpu/rms_norm.h"

#include <cmath>
#include <vector>

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

void rms_norm_backward(const float* x, const float* weight, const float* dy, float* dx, float* dweight,
                       std::int64_t rows, std::int64_t dim, float eps) {
  std::vector<double> dw(weight && dweight ? dim : 0, 0.0);
#pragma omp parallel
  {
    std::vector<double> dw_local(dw.size(), 0.0);
#pragma omp for schedule(static)
    for (std::int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * dim;
      const float* dyr = dy + r * dim;
      float* dxr = dx + r * dim;
      double sum = 0;
      for (std::int64_t i = 0; i < dim; ++i) sum += static_cast<double>(xr[i]) * xr[i];
      const double inv = 1.0 / std::sqrt(sum / static_cast<double>(dim) + static_cast<double>(eps));
      // dn = dy · w;  dx = inv · (dn - n · mean(dn · n)),  n = x · inv
      double dot = 0;
      for (std::int64_t i = 0; i < dim; ++i) {
        const double dn = weight ? static_cast<double>(dyr[i]) * weight[i] : dyr[i];
        dot += dn * xr[i] * inv;
        if (!dw_local.empty()) dw_local[i] += static_cast<double>(dyr[i]) * xr[i] * inv;
      }
      const double mean_dot = dot / static_cast<double>(dim);
      for (std::int64_t i = 0; i < dim; ++i) {
        const double dn = weight ? static_cast<double>(dyr[i]) * weight[i] : dyr[i];
        dxr[i] = static_cast<float>(inv * (dn - xr[i] * inv * mean_dot));
      }
    }
    if (!dw_local.empty()) {
#pragma omp critical
      for (std::size_t i = 0; i < dw.size(); ++i) dw[i] += dw_local[i];
    }
  }
  for (std::size_t i = 0; i < dw.size(); ++i) dweight[i] += static_cast<float>(dw[i]);
}

}  // namespace g4
