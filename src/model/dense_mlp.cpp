#include "model/dense_mlp.h"

#include "model/linear.h"
#include "ops/ops.h"

namespace g4 {

Tensor dense_mlp_forward(const Tensor& y, const Tensor& gate, const Tensor& up, const Tensor& down,
                         DenseMlpTape* tape) {
  Tensor g = Linear(gate).forward(y);
  Tensor u = Linear(up).forward(y);
  Tensor out = Linear(down).forward(ops::geglu(g, u));
  if (tape) *tape = {y, std::move(g), std::move(u)};
  return out;
}

Tensor dense_mlp_backward(const DenseMlpTape& tape, const Tensor& gate, const Tensor& up, const Tensor& down,
                          const Tensor& dout, Tensor& dgate, Tensor& dup, Tensor& ddown) {
  const Tensor da = Linear(down, &ddown).backward(ops::geglu(tape.gate, tape.up), dout);
  const ops::GegluGrads d = ops::geglu_backward(tape.gate, tape.up, da);
  Tensor dy = Linear(gate, &dgate).backward(tape.y, d.gate);
  Linear(up, &dup).backward_add(tape.y, d.up, dy);
  return dy;
}

}  // namespace g4
