#include "train/adamw.h"

#include <cmath>

#include "core/error.h"

namespace g4 {

AdamWStepConstants adamw_step_constants(const AdamWConfig& config, std::int64_t step, double lr) {
  const double b1 = config.beta1, b2 = config.beta2;
  const double bc1 = 1.0 - std::pow(b1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(b2, static_cast<double>(step));
  return {b1, b2, lr / bc1, std::sqrt(bc2), 1.0 - lr * config.weight_decay, config.eps};
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

void AdamW::step(const std::vector<ParamRef>& params, double lr) {
  ++steps_;
  const AdamWStepConstants k = adamw_step_constants(config_, steps_, lr);
  for (const ParamRef& p : params) {
    check(p.param && p.grad && p.param->shape() == p.grad->shape(), "AdamW: parameter ", p.name,
          " and its gradient differ in shape");
    auto [it, created] = state_.try_emplace(p.name);
    if (created) it->second = {Tensor(DType::f32, p.param->shape()), Tensor(DType::f32, p.param->shape())};
    adamw_update(p.param->f32(), p.grad->f32(), it->second.first.f32(), it->second.second.f32(),
                 p.param->numel(), k);
  }
}

double global_grad_norm(const std::vector<ParamRef>& params) {
  double sum = 0;
  for (const ParamRef& p : params) {
    const float* g = p.grad->f32();
    const std::int64_t n = p.grad->numel();
#pragma omp parallel for reduction(+ : sum) schedule(static) if (n > 65536)
    for (std::int64_t i = 0; i < n; ++i) sum += static_cast<double>(g[i]) * g[i];
  }
  return std::sqrt(sum);
}

double clip_grad_norm(const std::vector<Tensor*>& grads, double max_norm) {
  double sum = 0;
  for (const Tensor* g : grads) {
    const float* p = g->f32();
    const std::int64_t n = g->numel();
#pragma omp parallel for reduction(+ : sum) schedule(static) if (n > 65536)
    for (std::int64_t i = 0; i < n; ++i) sum += static_cast<double>(p[i]) * p[i];
  }
  const double norm = std::sqrt(sum);
  if (max_norm > 0 && norm > max_norm) {
    const float scale = static_cast<float>(max_norm / norm);
    for (Tensor* g : grads) {
      float* p = g->f32();
      const std::int64_t n = g->numel();
#pragma omp parallel for schedule(static) if (n > 65536)
      for (std::int64_t i = 0; i < n; ++i) p[i] *= scale;
    }
  }
  return norm;
}

}  // namespace g4
