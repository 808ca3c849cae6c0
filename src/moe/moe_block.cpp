#include "moe/moe_block.h"

#include "core/error.h"
#include "ops/ops.h"

namespace g4 {

namespace {

Gemma4MoeWeights<float> pointers(const MoeBlockWeights& w) {
  return {w.router_proj.f32(), w.router_scale.f32(), w.gate_and_up.f32(), w.down.f32()};
}

// The MoE block on Tensors runs on the host only so far (the CUDA MoE layer is reached through ops/cuda).
void require_host(const Tensor& x) {
  if (x.device() != Device::cpu) fail("op moe_block has no ", device_name(x.device()), " version yet");
}

void require_tokens_by_hidden(const Tensor& x, std::int64_t hidden, const char* what) {
  if (x.rank() != 2 || x.dim(1) != hidden)
    fail("MoE block: ", what, " ", shape_str(x.shape()), " is not [tokens, ", hidden, "]");
}

}  // namespace

Tensor moe_block_forward(const Gemma4MoeConfig& config, const MoeBlockWeights& w, const Tensor& gate_input,
                         const Tensor& expert_input, Gemma4MoeContext<float>& ctx,
                         const Dispatcher<float>* dispatcher) {
  require_host(gate_input);
  const std::int64_t T = gate_input.dim(0), H = gate_input.dim(1);
  require_tokens_by_hidden(expert_input, H, "expert input");
  Tensor y = ops::zeros({T, H});
  gemma4_moe_forward<float>(config, pointers(w), gate_input.f32(), expert_input.f32(), nullptr, T, y.f32(),
                            &ctx, dispatcher);
  return y;
}

MoeBlockInputGrads moe_block_backward(const Gemma4MoeConfig& config, const MoeBlockWeights& w,
                                      const Tensor& expert_input, Gemma4MoeContext<float>& ctx,
                                      const Tensor& dy, const MoeBlockGrads& g,
                                      const Dispatcher<float>* dispatcher) {
  require_host(expert_input);
  const std::int64_t T = expert_input.dim(0), H = expert_input.dim(1);
  require_tokens_by_hidden(dy, H, "output gradient");
  MoeBlockInputGrads d{ops::zeros({T, H}), ops::zeros({T, H})};
  gemma4_moe_backward<float>(
      config, pointers(w), expert_input.f32(), ctx, dy.f32(), d.gate_input.f32(), d.expert_input.f32(),
      Gemma4MoeGrads<float>{g.router_proj.f32(), g.router_scale.f32(), g.gate_and_up.f32(), g.down.f32()},
      dispatcher);
  return d;
}

}  // namespace g4
