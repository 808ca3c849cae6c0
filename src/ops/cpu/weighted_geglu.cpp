#include "ops/cpu/weighted_geglu.h"

#include <cmath>

namespace g4 {

namespace {

// gelu_tanh(y1) · y2 and its partial derivatives.
struct Pointwise {
  double value = 0, d1 = 0, d2 = 0;
};

Pointwise geglu(double y1, double y2) {
  constexpr double c = 0.7978845608028654;  // √(2/π)
  constexpr double kappa = 0.044715;
  const double t = std::tanh(c * (y1 + kappa * y1 * y1 * y1));
  const double gelu = 0.5 * y1 * (1.0 + t);
  const double dgelu = 0.5 * (1.0 + t) + 0.5 * y1 * (1.0 - t * t) * c * (1.0 + 3.0 * kappa * y1 * y1);
  return {gelu * y2, dgelu * y2, gelu};
}

}  // namespace

template <class T>
void weighted_geglu_forward(const T* h, const T* w, std::int64_t rows, std::int64_t inter, T* out) {
#pragma omp parallel for schedule(static) if (rows * inter > 32768)
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* hr = h + r * 2 * inter;
    const double wr = w ? static_cast<double>(w[r]) : 1.0;
    T* outr = out + r * inter;
    for (std::int64_t j = 0; j < inter; ++j) outr[j] = static_cast<T>(geglu(hr[j], hr[inter + j]).value * wr);
  }
}

template <class T>
void weighted_geglu_backward(const T* h, const T* w, const T* dout, std::int64_t rows, std::int64_t inter,
                             T* dh, T* dw) {
#pragma omp parallel for schedule(static) if (rows * inter > 32768)
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* hr = h + r * 2 * inter;
    const double wr = w ? static_cast<double>(w[r]) : 1.0;
    const T* gr = dout + r * inter;
    T* dhr = dh + r * 2 * inter;
    double dw_sum = 0.0;
    for (std::int64_t j = 0; j < inter; ++j) {
      const Pointwise f = geglu(hr[j], hr[inter + j]);
      const double g = gr[j];
      dhr[j] = static_cast<T>(g * wr * f.d1);
      dhr[inter + j] = static_cast<T>(g * wr * f.d2);
      dw_sum += f.value * g;
    }
    if (dw) dw[r] = static_cast<T>(dw_sum);
  }
}

template void weighted_geglu_forward<float>(const float*, const float*, std::int64_t, std::int64_t, float*);
template void weighted_geglu_forward<double>(const double*, const double*, std::int64_t, std::int64_t,
                                             double*);
template void weighted_geglu_backward<float>(const float*, const float*, const float*, std::int64_t,
                                             std::int64_t, float*, float*);
template void weighted_geglu_backward<double>(const double*, const double*, const double*, std::int64_t,
                                              std::int64_t, double*, double*);

}  // namespace g4
