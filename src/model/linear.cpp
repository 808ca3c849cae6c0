#include "model/linear.h"

#include "core/error.h"
#include "ops/ops.h"

namespace g4 {

Tensor Linear::forward(const Tensor& x) const {
  return ops::linear(x, weight_);
}

Tensor Linear::forward_to_f32(const Tensor& x) const {
  return ops::linear_to_f32(x, weight_);
}

Tensor& Linear::grad() const {
  check(grad_ != nullptr, "Linear ", shape_str(weight_.shape()), ": backward without a gradient tensor");
  return *grad_;
}

Tensor Linear::backward(const Tensor& x, const Tensor& dy) const {
  ops::linear_backward_weight(dy, x, grad());
  return ops::linear_backward_input(dy, weight_);
}

void Linear::backward_add(const Tensor& x, const Tensor& dy, Tensor& dx) const {
  ops::linear_backward_weight(dy, x, grad());
  ops::linear_backward_input_add_(dx, dy, weight_);
}

}  // namespace g4
