// moe_block.h: the Gemma 4 MoE block's routed part on Tensors, as the decoder layer calls it (the
// pointer-level pieces are in gemma4_moe.h). Same invariants: weights native ([E, H] router, [H] scale,
// [n_local, H, 2I] gate_and_up, [n_local, I, H] down); parameter gradients accumulate (+=), input gradients
// are fresh.
//
// On the CPU everything is f32 and the experts run through the dispatcher. On a device the block runs as that
// backend's DeviceMoeBlock (ops/moe_block_kernel.h), kept in the context: activations and expert weights
// bf16, router weights and every parameter gradient f32, no expert parallelism yet (a collective dispatcher
// is an error).
#pragma once

#include "core/tensor.h"
#include "moe/gemma4_moe.h"

namespace g4 {

// References to the block's four parameters (weights, or their gradients).
template <class TensorRef>
struct MoeBlockParameters {
  TensorRef router_proj, router_scale, gate_and_up, down;
};
using MoeBlockWeights = MoeBlockParameters<const Tensor&>;
using MoeBlockGrads = MoeBlockParameters<Tensor&>;

// gate_input: the raw residual [T, H]; expert_input: pre_feedforward_layernorm_2 of it. The backward takes
// both again (a device block's router backward reads the gate input). Returns the experts'
// combined output [T, H]; `ctx` keeps routing and expert activations for the backward.
Tensor moe_block_forward(const Gemma4MoeConfig& config, const MoeBlockWeights& w, const Tensor& gate_input,
                         const Tensor& expert_input, Gemma4MoeContext<float>& ctx,
                         const Dispatcher<float>* dispatcher);

struct MoeBlockInputGrads {
  Tensor gate_input, expert_input;
};
MoeBlockInputGrads moe_block_backward(const Gemma4MoeConfig& config, const MoeBlockWeights& w,
                                      const Tensor& gate_input, const Tensor& expert_input,
                                      Gemma4MoeContext<float>& ctx, const Tensor& dy,
                                      const MoeBlockGrads& grads, const Dispatcher<float>* dispatcher);

}  // namespace g4
