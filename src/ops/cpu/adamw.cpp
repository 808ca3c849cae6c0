#include "ops/cpu/adamw.h"

#include <cmath>

namespace g4 {

void adamw_update(float* w, const float* g, float* m, float* v, std::int64_t n, const AdamWStepConstants& k) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (std::int64_t i = 0; i < n; ++i) adamw_element(w[i], g[i], m[i], v[i], k);
}

double sum_of_squares(const float* x, std::int64_t n) {
  double sum = 0;
#pragma omp parallel for reduction(+ : sum) schedule(static) if (n > 65536)
  for (std::int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  return sum;
}

}  // namespace g4
