#include "moe/moe_block.h"

#include "core/error.h"
#include "ops/ops.h"

namespace g4 {

namespace {

Gemma4MoeWeights<float> pointers(const MoeBlockWeights& w) {
  return {w.router_proj.f32(), w.router_scale.f32(), w.gate_and_up.f32(), w.down.f32()};
}

// The bf16 pointer of a device tensor after checking its dtype.
const Bf16Bits* bf16_data(const Tensor& t, const char* what) {
  check(t.dtype() == DType::bf16, "op moe_block on ", device_name(t.device()), " takes bf16 ", what, ", got ",
        dtype_name(t.dtype()));
  return static_cast<const Bf16Bits*>(t.data());
}
float* f32_data(const Tensor& t, const char* what) {
  check(t.dtype() == DType::f32, "op moe_block on ", device_name(t.device()), " takes f32 ", what, ", got ",
        dtype_name(t.dtype()));
  return static_cast<float*>(const_cast<Tensor&>(t).data());
}

// The context's device block, made (or remade, for more tokens) by the device's factory.
DeviceMoeBlock& device_block(const Gemma4MoeConfig& c, Gemma4MoeContext<float>& ctx, Device device,
                             std::int64_t tokens, const Dispatcher<float>* dispatcher) {
  check(!dispatcher || !dispatcher->collective(), "op moe_block on ", device_name(device),
        " runs without expert parallelism so far (use one process)");
  const DeviceMoeBlockFactory factory = device == Device::cuda ? cuda_moe_block_factory() : nullptr;
  if (!factory) fail("op moe_block has no ", device_name(device), " version");
  if (!ctx.device || ctx.device->shape().tokens < tokens)
    ctx.device =
        factory(MoeBlockShape{tokens, static_cast<int>(c.gate.hidden), static_cast<int>(c.experts.inter),
                              static_cast<int>(c.gate.num_experts), static_cast<int>(c.gate.top_k),
                              static_cast<float>(c.gate.eps)});
  return *ctx.device;
}

void require_tokens_by_hidden(const Tensor& x, std::int64_t hidden, const char* what) {
  if (x.rank() != 2 || x.dim(1) != hidden)
    fail("MoE block: ", what, " ", shape_str(x.shape()), " is not [tokens, ", hidden, "]");
}

}  // namespace

Tensor moe_block_forward(const Gemma4MoeConfig& config, const MoeBlockWeights& w, const Tensor& gate_input,
                         const Tensor& expert_input, Gemma4MoeContext<float>& ctx,
                         const Dispatcher<float>* dispatcher) {
  const std::int64_t T = gate_input.dim(0), H = gate_input.dim(1);
  require_tokens_by_hidden(expert_input, H, "expert input");
  if (gate_input.device() != Device::cpu) {
    Tensor y = ops::zeros({T, H}, gate_input.device(), DType::bf16);
    device_block(config, ctx, gate_input.device(), T, dispatcher)
        .forward(T, bf16_data(gate_input, "activations"), bf16_data(expert_input, "activations"),
                 f32_data(w.router_proj, "router weights"), f32_data(w.router_scale, "router weights"),
                 bf16_data(w.gate_and_up, "expert weights"), bf16_data(w.down, "expert weights"),
                 static_cast<Bf16Bits*>(y.data()));
    return y;
  }
  Tensor y = ops::zeros({T, H});
  gemma4_moe_forward<float>(config, pointers(w), gate_input.f32(), expert_input.f32(), nullptr, T, y.f32(),
                            &ctx, dispatcher);
  return y;
}

MoeBlockInputGrads moe_block_backward(const Gemma4MoeConfig& config, const MoeBlockWeights& w,
                                      const Tensor& gate_input, const Tensor& expert_input,
                                      Gemma4MoeContext<float>& ctx, const Tensor& dy, const MoeBlockGrads& g,
                                      const Dispatcher<float>* dispatcher) {
  const std::int64_t T = expert_input.dim(0), H = expert_input.dim(1);
  require_tokens_by_hidden(dy, H, "output gradient");
  if (expert_input.device() != Device::cpu) {
    check(ctx.device != nullptr, "op moe_block: backward without its forward on ",
          device_name(expert_input.device()));
    const Device dev = expert_input.device();
    MoeBlockInputGrads d{ops::zeros({T, H}, dev, DType::bf16), ops::zeros({T, H}, dev, DType::bf16)};
    check(gate_input.shape() == expert_input.shape(), "MoE block: gate input ", shape_str(gate_input.shape()),
          " and expert input ", shape_str(expert_input.shape()), " differ");
    ctx.device->backward(
        bf16_data(gate_input, "activations"), bf16_data(dy, "gradients"),
        f32_data(w.router_proj, "router weights"), f32_data(w.router_scale, "router weights"),
        bf16_data(w.gate_and_up, "expert weights"), bf16_data(w.down, "expert weights"),
        static_cast<Bf16Bits*>(d.gate_input.data()), static_cast<Bf16Bits*>(d.expert_input.data()),
        f32_data(g.router_proj, "gradients"), f32_data(g.router_scale, "gradients"),
        f32_data(g.gate_and_up, "gradients"), f32_data(g.down, "gradients"));
    return d;
  }
  MoeBlockInputGrads d{ops::zeros({T, H}), ops::zeros({T, H})};
  gemma4_moe_backward<float>(
      config, pointers(w), expert_input.f32(), ctx, dy.f32(), d.gate_input.f32(), d.expert_input.f32(),
      Gemma4MoeGrads<float>{g.router_proj.f32(), g.router_scale.f32(), g.gate_and_up.f32(), g.down.f32()},
      dispatcher);
  return d;
}

}  // namespace g4
