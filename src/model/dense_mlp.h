// dense_mlp.h: Gemma 4's dense GEGLU MLP: down_proj(gelu_tanh(gate_proj(y)) · up_proj(y)).
#pragma once

#include "core/tensor.h"

namespace g4 {

// y [T, H] -> [T, H]; gate/up [W, H], down [H, W].
Tensor dense_mlp_forward(const Tensor& y, const Tensor& gate, const Tensor& up, const Tensor& down);

}  // namespace g4
