#include "ops/kernels.h"

#include "ops/moe_block_kernel.h"

namespace g4 {

Kernels& cuda_kernels() {
  static Kernels kernels;  // filled by the CUDA backend (ops/cuda/kernels.h)
  return kernels;
}

Bf16Kernels& cuda_bf16_kernels() {
  static Bf16Kernels kernels;
  return kernels;
}

DeviceMoeBlockFactory& cuda_moe_block_factory() {
  static DeviceMoeBlockFactory factory = nullptr;
  return factory;
}

}  // namespace g4
