#include "model/dense_mlp.h"

#include "ops/cpu/gelu.h"
#include "ops/cpu/gemm.h"

namespace g4 {

Tensor dense_mlp_forward(const Tensor& y, const Tensor& gate, const Tensor& up, const Tensor& down) {
  const std::int64_t T = y.dim(0), H = y.dim(1), W = gate.dim(0);
  Tensor g(DType::f32, {T, W}), u(DType::f32, {T, W});
  linear_forward(y.f32(), gate.f32(), g.f32(), T, W, H);
  linear_forward(y.f32(), up.f32(), u.f32(), T, W, H);
  float* gp = g.f32();
  const float* upp = u.f32();
#pragma omp parallel for schedule(static) if (T * W > 65536)
  for (std::int64_t i = 0; i < T * W; ++i) gp[i] = gelu_tanh(gp[i]) * upp[i];
  Tensor out(DType::f32, {T, H});
  linear_forward(g.f32(), down.f32(), out.f32(), T, H, W);
  return out;
}

}  // namespace g4
