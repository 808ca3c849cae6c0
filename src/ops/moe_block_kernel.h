// moe_block_kernel.h: the routed part of a Gemma 4 MoE block (router + grouped experts) as one object of a
// device backend, for bf16 models on that device; moe/moe_block.h calls it for tensors that live there. The
// CPU runs the block through moe/'s own pieces instead, so only devices install a factory.
//
// Arithmetic (ops/cuda/moe_gate.h, moe_experts.h): the router in fp32 on the bf16 residual (router weights
// f32), top-k with ties to the lower expert id, routing weights rounded to bf16 as NeMo returns them; experts
// in bf16 with fp32 accumulation. Invariants: one object serves one block for batches of at most
// `shape.tokens` tokens; forward keeps pointers to its inputs, which must stay valid and unchanged until the
// backward that follows it (the backward takes the gate input again, which the caller keeps); backward
// overwrites the input gradients and adds (+=) into the f32 parameter gradients.
#pragma once

#include <cstdint>
#include <memory>

#include "ops/kernels.h"

namespace g4 {

struct MoeBlockShape {
  std::int64_t tokens = 0;  // the most tokens a forward will see
  int hidden = 0, inter = 0, experts = 0, top_k = 0;
  float eps = 1e-6f;
};

class DeviceMoeBlock {
 public:
  virtual ~DeviceMoeBlock() = default;
  virtual const MoeBlockShape& shape() const = 0;
  // gate_input (the raw residual) and expert_input [T, H] bf16; router_proj [E, H] and router_scale [H] f32;
  // gate_and_up [E, H, 2I] and down [E, I, H] bf16 (native layout); y [T, H] bf16, overwritten.
  virtual void forward(std::int64_t tokens, const Bf16Bits* gate_input, const Bf16Bits* expert_input,
                       const float* router_proj, const float* router_scale, const Bf16Bits* gate_and_up,
                       const Bf16Bits* down, Bf16Bits* y) = 0;
  // dy [T, H] bf16 -> d_gate_input, d_expert_input [T, H] bf16 (overwritten); the f32 gradients accumulate.
  virtual void backward(const Bf16Bits* gate_input, const Bf16Bits* dy, const float* router_proj,
                        const float* router_scale, const Bf16Bits* gate_and_up, const Bf16Bits* down,
                        Bf16Bits* d_gate_input, Bf16Bits* d_expert_input, float* d_router_proj,
                        float* d_router_scale, float* d_gate_and_up, float* d_down) = 0;
};

using DeviceMoeBlockFactory = std::unique_ptr<DeviceMoeBlock> (*)(const MoeBlockShape& shape);
// The CUDA backend's factory (nullptr until the CUDA backend is installed).
DeviceMoeBlockFactory& cuda_moe_block_factory();

}  // namespace g4
