// dense_mlp.h: Gemma 4's dense GEGLU MLP: down_proj(gelu_tanh(gate_proj(y)) · up_proj(y)).
//
// Backward invariants (as every *_backward in model/): parameter gradients accumulate (+=), the returned
// activation gradient is fresh.
#pragma once

#include "core/tensor.h"

namespace g4 {

struct DenseMlpTape {
  Tensor y, gate, up;  // input and the two pre-activation projections
};

// y [T, H] -> [T, H]; gate/up [W, H], down [H, W]. Fills `tape` when non-null.
Tensor dense_mlp_forward(const Tensor& y, const Tensor& gate, const Tensor& up, const Tensor& down,
                         DenseMlpTape* tape = nullptr);

// Returns dy; adds into dgate, dup, ddown.
Tensor dense_mlp_backward(const DenseMlpTape& tape, const Tensor& gate, const Tensor& up, const Tensor& down,
                          const Tensor& dout, Tensor& dgate, Tensor& dup, Tensor& ddown);

}  // namespace g4
