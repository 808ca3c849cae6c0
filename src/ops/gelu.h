// gelu.h: the tanh approximation of GELU (PyTorch's gelu(approximate="tanh"), HF "gelu_pytorch_tanh"):
// gelu(v) = 0.5·v·(1 + tanh(√(2/π)·(v + 0.044715·v³))). Shared by the CPU and the CUDA kernels.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/host_device.h"

namespace g4 {

// Evaluated in float: its rounding error (a few ulp) is far below the model's fp32 tolerance.
G4_HOST_DEVICE inline float gelu_tanh(float x) {
  const float inner = 0.7978845608028654f * (x + 0.044715f * x * x * x);
  return 0.5f * x * (1.0f + std::tanh(inner));
}

// d gelu / dv
G4_HOST_DEVICE inline float gelu_tanh_grad(float v) {
  const double x = v;
  const double inner = 0.7978845608028654 * (x + 0.044715 * x * x * x);
  const double t = std::tanh(inner);
  const double dinner = 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x * x);
  return static_cast<float>(0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dinner);
}

}  // namespace g4
