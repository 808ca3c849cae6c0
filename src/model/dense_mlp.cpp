#include "model/dense_mlp.h"

#include "ops/ops.h"

namespace g4 {

Tensor dense_mlp_forward(const Tensor& y, const Tensor& gate, const Tensor& up, const Tensor& down,
                         DenseMlpTape* tape) {
  Tensor g = ops::linear(y, gate);
  Tensor u = ops::linear(y, up);
  Tensor out = ops::linear(ops::geglu(g, u), down);
  if (tape) *tape = {y, std::move(g), std::move(u)};
  return out;
}

Tensor dense_mlp_backward(const DenseMlpTape& tape, const Tensor& gate, const Tensor& up, const Tensor& down,
                          const Tensor& dout, Tensor& dgate, Tensor& dup, Tensor& ddown) {
  ops::linear_backward_weight(dout, ops::geglu(tape.gate, tape.up), ddown);
  const ops::GegluGrads d = ops::geglu_backward(tape.gate, tape.up, ops::linear_backward_input(dout, down));
  ops::linear_backward_weight(d.gate, tape.y, dgate);
  ops::linear_backward_weight(d.up, tape.y, dup);
  Tensor dy = ops::linear_backward_input(d.gate, gate);
  ops::linear_backward_input_add_(dy, d.up, up);
  return dy;
}

}  // namespace g4
