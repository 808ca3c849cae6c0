#include "moe/gemma4_moe.h"

#include "core/error.h"

namespace g4 {

Gemma4MoeConfig gemma4_moe_config(std::int64_t hidden, std::int64_t num_experts, std::int64_t top_k,
                                  std::int64_t moe_intermediate, double rms_norm_eps,
                                  ExpertsBackend backend) {
  check(hidden > 0 && num_experts > 0 && top_k > 0 && top_k <= num_experts && moe_intermediate > 0,
        "invalid MoE sizes: hidden ", hidden, ", experts ", num_experts, ", top_k ", top_k,
        ", moe_intermediate ", moe_intermediate);
  Gemma4MoeConfig c;
  c.gate.hidden = hidden;
  c.gate.num_experts = num_experts;
  c.gate.top_k = top_k;
  c.gate.eps = rms_norm_eps;
  c.experts.hidden = hidden;
  c.experts.inter = moe_intermediate;
  c.experts.num_experts = num_experts;
  c.experts.n_local = num_experts;
  c.experts.start = 0;
  c.experts.backend = backend;
  return c;
}

template <class T>
void gemma4_moe_forward(const Gemma4MoeConfig& cfg, const Gemma4MoeWeights<T>& w, const T* gate_input,
                        const T* expert_input, const std::uint8_t* token_mask, std::int64_t tokens, T* y,
                        Gemma4MoeContext<T>* ctx, const Dispatcher<T>* dispatcher) {
  const std::int64_t K = cfg.gate.top_k;
  ctx->weights.resize(static_cast<std::size_t>(tokens * K));
  ctx->indices.resize(static_cast<std::size_t>(tokens * K));
  moe_gate_forward<T>(cfg.gate, gate_input, w.router_proj, w.router_scale, tokens, ctx->weights.data(),
                      ctx->indices.data(), &ctx->gate);
  const InProcessDispatcher<T> in_process;
  (dispatcher ? *dispatcher : in_process)
      .forward(cfg.experts, expert_input, token_mask, ctx->weights.data(), ctx->indices.data(), tokens, K,
               w.gate_and_up, w.down, y, &ctx->dispatch);
}

template <class T>
void gemma4_moe_backward(const Gemma4MoeConfig& cfg, const Gemma4MoeWeights<T>& w, const T* expert_input,
                         Gemma4MoeContext<T>& ctx, const T* dy, T* d_gate_input, T* d_expert_input,
                         const Gemma4MoeGrads<T>& grads, const Dispatcher<T>* dispatcher) {
  ctx.dweights.resize(ctx.weights.size());
  const InProcessDispatcher<T> in_process;
  (dispatcher ? *dispatcher : in_process)
      .backward(cfg.experts, expert_input, w.gate_and_up, w.down, ctx.dispatch, dy, d_expert_input,
                ctx.dweights.data(), grads.gate_and_up, grads.down);
  moe_gate_backward<T>(cfg.gate, w.router_proj, w.router_scale, ctx.gate, ctx.dweights.data(), d_gate_input,
                       grads.router_scale, grads.router_proj);
}

#define G4_INSTANTIATE(T)                                                                                    \
  template void gemma4_moe_forward<T>(const Gemma4MoeConfig&, const Gemma4MoeWeights<T>&, const T*,          \
                                      const T*, const std::uint8_t*, std::int64_t, T*, Gemma4MoeContext<T>*, \
                                      const Dispatcher<T>*);                                                 \
  template void gemma4_moe_backward<T>(const Gemma4MoeConfig&, const Gemma4MoeWeights<T>&, const T*,         \
                                       Gemma4MoeContext<T>&, const T*, T*, T*, const Gemma4MoeGrads<T>&,     \
                                       const Dispatcher<T>*);
G4_INSTANTIATE(float)
G4_INSTANTIATE(double)
#undef G4_INSTANTIATE

}  // namespace g4
