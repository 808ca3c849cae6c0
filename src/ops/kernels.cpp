#include "ops/kernels.h"

namespace g4 {

Kernels& cuda_kernels() {
  static Kernels kernels;  // filled by the CUDA backend (ops/cuda/kernels.h)
  return kernels;
}

}  // namespace g4
