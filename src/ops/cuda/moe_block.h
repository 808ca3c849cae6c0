// moe_block.h: the CUDA version of ops/moe_block_kernel.h's DeviceMoeBlock: moe_gate.h's router, then
// moe_experts.h's grouped experts, on the legacy default stream (ordered with the op interface's kernels).
//
// The experts' kernels need hidden and moe_intermediate_size in multiples of 8 (16-byte rows). hidden must
// be; an intermediate size that is not is padded inside the block: the weights are copied into buffers whose
// extra gate/up columns and down rows are zero (so the extra activations are gelu(0)·0 = 0 and contribute
// nothing), and only the real part of their gradients is added into the caller's.
#pragma once

namespace g4::cuda {

// Installs the factory into cuda_moe_block_factory() (ops/moe_block_kernel.h). Idempotent.
void install_cuda_moe_block();

}  // namespace g4::cuda
