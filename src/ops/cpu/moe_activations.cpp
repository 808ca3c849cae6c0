#include "ops/cpu/moe_activations.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace g4 {

ExpertActivation expert_activation_from_name(std::string_view name) {
  if (name == "swiglu") return ExpertActivation::swiglu;
  if (name == "geglu") return ExpertActivation::geglu;
  if (name == "quick_geglu") return ExpertActivation::quick_geglu;
  if (name == "relu2") return ExpertActivation::relu2;
  if (name == "clamped_swiglu") return ExpertActivation::clamped_swiglu;
  fail("invalid expert activation \"", std::string(name),
       "\" (expected swiglu, geglu, quick_geglu, relu2 or clamped_swiglu)");
}

std::string_view expert_activation_name(ExpertActivation act) {
  switch (act) {
    case ExpertActivation::swiglu:
      return "swiglu";
    case ExpertActivation::geglu:
      return "geglu";
    case ExpertActivation::quick_geglu:
      return "quick_geglu";
    case ExpertActivation::relu2:
      return "relu2";
    case ExpertActivation::clamped_swiglu:
      return "clamped_swiglu";
  }
  return "?";
}

bool is_gated(ExpertActivation act) {
  return act != ExpertActivation::relu2;
}

namespace {

// The unweighted activation of one element and its partial derivatives.
struct Pointwise {
  double value = 0;  // f(y1, y2)
  double d1 = 0;     // ∂f/∂y1
  double d2 = 0;     // ∂f/∂y2 (0 for relu2)
};

double sigmoid(double v) {
  return 1.0 / (1.0 + std::exp(-v));
}

Pointwise evaluate(ExpertActivation act, const ActivationParams& p, double y1, double y2) {
  Pointwise r;
  switch (act) {
    case ExpertActivation::swiglu: {
      const double s = sigmoid(y1);
      const double silu = y1 * s;
      r.value = silu * y2;
      r.d1 = s * (1.0 + y1 * (1.0 - s)) * y2;
      r.d2 = silu;
      break;
    }
    case ExpertActivation::geglu: {
      constexpr double c = 0.7978845608028654;  // √(2/π)
      constexpr double kappa = 0.044715;
      const double t = std::tanh(c * (y1 + kappa * y1 * y1 * y1));
      const double gelu = 0.5 * y1 * (1.0 + t);
      const double dgelu = 0.5 * (1.0 + t) + 0.5 * y1 * (1.0 - t * t) * c * (1.0 + 3.0 * kappa * y1 * y1);
      r.value = gelu * y2;
      r.d1 = dgelu * y2;
      r.d2 = gelu;
      break;
    }
    case ExpertActivation::quick_geglu: {
      double pass1 = 1.0, pass2 = 1.0;
      if (p.limit > 0) {
        if (y1 > p.limit) {
          y1 = p.limit;
          pass1 = 0.0;
        }
        if (y2 > p.limit) {
          y2 = p.limit;
          pass2 = 0.0;
        }
        if (y2 < -p.limit) {
          y2 = -p.limit;
          pass2 = 0.0;
        }
      }
      const double s = sigmoid(p.alpha * y1);
      const double up = y2 + p.linear_offset;
      r.value = y1 * s * up;
      r.d1 = pass1 * s * (1.0 + p.alpha * y1 * (1.0 - s)) * up;
      r.d2 = pass2 * y1 * s;
      break;
    }
    case ExpertActivation::relu2: {
      const double v = y1 > 0 ? y1 : 0.0;
      r.value = v * v;
      r.d1 = 2.0 * v;
      break;
    }
    case ExpertActivation::clamped_swiglu: {
      double pass1 = 1.0, pass2 = 1.0;
      if (p.limit > 0) {
        if (y1 > p.limit) {
          y1 = p.limit;
          pass1 = 0.0;
        }
        if (y2 > p.limit) {
          y2 = p.limit;
          pass2 = 0.0;
        }
        if (y2 < -p.limit) {
          y2 = -p.limit;
          pass2 = 0.0;
        }
      }
      const double s = sigmoid(y1);
      const double silu = y1 * s;
      r.value = silu * y2;
      r.d1 = pass1 * s * (1.0 + y1 * (1.0 - s)) * y2;
      r.d2 = pass2 * silu;
      break;
    }
  }
  return r;
}

}  // namespace

template <class T>
void weighted_activation_forward(ExpertActivation act, const ActivationParams& params, const T* h, const T* w,
                                 std::int64_t rows, std::int64_t inter, T* out) {
  const bool gated = is_gated(act);
  const std::int64_t width = activation_input_width(act, inter);
#pragma omp parallel for schedule(static) if (rows * inter > 32768)
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* hr = h + r * width;
    const double wr = w ? static_cast<double>(w[r]) : 1.0;
    T* outr = out + r * inter;
    for (std::int64_t j = 0; j < inter; ++j) {
      const double y1 = hr[j];
      const double y2 = gated ? static_cast<double>(hr[inter + j]) : 0.0;
      outr[j] = static_cast<T>(evaluate(act, params, y1, y2).value * wr);
    }
  }
}

template <class T>
void weighted_activation_backward(ExpertActivation act, const ActivationParams& params, const T* h,
                                  const T* w, const T* dout, std::int64_t rows, std::int64_t inter, T* dh,
                                  T* dw) {
  const bool gated = is_gated(act);
  const std::int64_t width = activation_input_width(act, inter);
#pragma omp parallel for schedule(static) if (rows * inter > 32768)
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* hr = h + r * width;
    const double wr = w ? static_cast<double>(w[r]) : 1.0;
    const T* gr = dout + r * inter;
    T* dhr = dh + r * width;
    double dw_sum = 0.0;
    for (std::int64_t j = 0; j < inter; ++j) {
      const double y1 = hr[j];
      const double y2 = gated ? static_cast<double>(hr[inter + j]) : 0.0;
      const Pointwise f = evaluate(act, params, y1, y2);
      const double g = gr[j];
      dhr[j] = static_cast<T>(g * wr * f.d1);
      if (gated) dhr[inter + j] = static_cast<T>(g * wr * f.d2);
      dw_sum += f.value * g;
    }
    if (dw) dw[r] = static_cast<T>(dw_sum);
  }
}

template void weighted_activation_forward<float>(ExpertActivation, const ActivationParams&, const float*,
                                                 const float*, std::int64_t, std::int64_t, float*);
template void weighted_activation_forward<double>(ExpertActivation, const ActivationParams&, const double*,
                                                  const double*, std::int64_t, std::int64_t, double*);
template void weighted_activation_backward<float>(ExpertActivation, const ActivationParams&, const float*,
                                                  const float*, const float*, std::int64_t, std::int64_t,
                                                  float*, float*);
template void weighted_activation_backward<double>(ExpertActivation, const ActivationParams&, const double*,
                                                   const double*, const double*, std::int64_t, std::int64_t,
                                                   double*, double*);

}  // namespace g4
