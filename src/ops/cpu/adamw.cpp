#include "ops/cpu/adamw.h"

#include <cmath>

namespace g4 {

AdamWStepConstants adamw_step_constants(const AdamWHyper& h, std::int64_t step, double lr) {
  const double bc1 = 1.0 - std::pow(h.beta1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(h.beta2, static_cast<double>(step));
  return {h.beta1, h.beta2, lr / bc1, std::sqrt(bc2), 1.0 - lr * h.weight_decay, h.eps};
}

void adamw_update(float* w, const float* g, float* m, float* v, std::int64_t n, const AdamWStepConstants& k) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (std::int64_t i = 0; i < n; ++i) {
    const double gi = g[i];
    const double mi = k.b1 * m[i] + (1.0 - k.b1) * gi;
    const double vi = k.b2 * v[i] + (1.0 - k.b2) * gi * gi;
    m[i] = static_cast<float>(mi);
    v[i] = static_cast<float>(vi);
    const double wi = static_cast<double>(w[i]) * k.decay;
    w[i] = static_cast<float>(wi - k.step_size * mi / (std::sqrt(vi) / k.bc2_sqrt + k.eps));
  }
}

double sum_of_squares(const float* x, std::int64_t n) {
  double sum = 0;
#pragma omp parallel for reduction(+ : sum) schedule(static) if (n > 65536)
  for (std::int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  return sum;
}

}  // namespace g4
