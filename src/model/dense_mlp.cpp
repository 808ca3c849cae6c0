#include "model/dense_mlp.h"

#include "ops/cpu/gelu.h"
#include "ops/cpu/gemm.h"

namespace g4 {

Tensor dense_mlp_forward(const Tensor& y, const Tensor& gate, const Tensor& up, const Tensor& down,
                         DenseMlpTape* tape) {
  const std::int64_t T = y.dim(0), H = y.dim(1), W = gate.dim(0);
  Tensor g(DType::f32, {T, W}), u(DType::f32, {T, W}), act(DType::f32, {T, W});
  linear_forward(y.f32(), gate.f32(), g.f32(), T, W, H);
  linear_forward(y.f32(), up.f32(), u.f32(), T, W, H);
  const float* gp = g.f32();
  const float* upp = u.f32();
  float* ap = act.f32();
#pragma omp parallel for schedule(static) if (T * W > 65536)
  for (std::int64_t i = 0; i < T * W; ++i) ap[i] = gelu_tanh(gp[i]) * upp[i];
  Tensor out(DType::f32, {T, H});
  linear_forward(act.f32(), down.f32(), out.f32(), T, H, W);
  if (tape) *tape = {y, g, u};
  return out;
}

Tensor dense_mlp_backward(const DenseMlpTape& tape, const Tensor& gate, const Tensor& up, const Tensor& down,
                          const Tensor& dout, Tensor& dgate, Tensor& dup, Tensor& ddown) {
  const std::int64_t T = tape.y.dim(0), H = tape.y.dim(1), W = gate.dim(0);
  const float* gp = tape.gate.f32();
  const float* upp = tape.up.f32();
  Tensor act(DType::f32, {T, W});
  for (std::int64_t i = 0; i < T * W; ++i) act.f32()[i] = gelu_tanh(gp[i]) * upp[i];
  matmul_tn(dout.f32(), act.f32(), ddown.f32(), H, W, T, /*accumulate=*/true);  // ddown += doutᵀ · act
  Tensor dact(DType::f32, {T, W});
  matmul_nn(dout.f32(), down.f32(), dact.f32(), T, W, H);  // dact = dout · down
  Tensor dg(DType::f32, {T, W}), du(DType::f32, {T, W});
#pragma omp parallel for schedule(static) if (T * W > 65536)
  for (std::int64_t i = 0; i < T * W; ++i) {
    dg.f32()[i] = dact.f32()[i] * upp[i] * gelu_tanh_grad(gp[i]);
    du.f32()[i] = dact.f32()[i] * gelu_tanh(gp[i]);
  }
  matmul_tn(dg.f32(), tape.y.f32(), dgate.f32(), W, H, T, true);
  matmul_tn(du.f32(), tape.y.f32(), dup.f32(), W, H, T, true);
  Tensor dy(DType::f32, {T, H});
  matmul_nn(dg.f32(), gate.f32(), dy.f32(), T, H, W);
  matmul_nn(du.f32(), up.f32(), dy.f32(), T, H, W, true);
  return dy;
}

}  // namespace g4
