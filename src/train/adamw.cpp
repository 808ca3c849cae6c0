#include "train/adamw.h"

#include <cmath>

#include "core/error.h"
#include "ops/ops.h"

namespace g4 {

void AdamW::step(const std::vector<ParamRef>& params, double lr) {
  ++steps_;
  const AdamWStepConstants k = adamw_step_constants(config_, steps_, lr);
  for (const ParamRef& p : params) {
    check(p.param && p.grad && p.param->shape() == p.grad->shape(), "AdamW: parameter ", p.name,
          " and its gradient differ in shape");
    auto [it, created] = state_.try_emplace(p.name);
    if (created) {  // on the parameter's device (a GPU's from its caching allocator)
      const Device d = p.param->device();
      it->second = d == Device::cpu
                       ? std::pair{Tensor(DType::f32, p.param->shape()), Tensor(DType::f32, p.param->shape())}
                       : std::pair{ops::zeros(p.param->shape(), d), ops::zeros(p.param->shape(), d)};
    }
    ops::adamw_(*p.param, *p.grad, it->second.first, it->second.second, k);
  }
}

double global_grad_norm(const std::vector<ParamRef>& params) {
  double sum = 0;
  for (const ParamRef& p : params) sum += ops::sum_of_squares(*p.grad);
  return std::sqrt(sum);
}

double clip_grad_norm(const std::vector<Tensor*>& grads, double max_norm) {
  double sum = 0;
  for (const Tensor* g : grads) sum += ops::sum_of_squares(*g);
  const double norm = std::sqrt(sum);
  if (max_norm > 0 && norm > max_norm)
    for (Tensor* g : grads) ops::scale_(*g, static_cast<float>(max_norm / norm));
  return norm;
}

}  // namespace g4
