// gemma4_moe.h: the Gemma 4 MoE block's routed part (NeMo Gemma4MoE.forward, the note's §3) assembled from
// ops/cpu/moe_gate.h and the experts of a Dispatcher (dispatcher.h): what the decoder layer calls.
//
//   (w, idx) = Gemma4Gate(gate_input)              gate_input = the RAW residual x1 (not the normed input)
//   y = GroupedExperts(expert_input, mask, w, idx) expert_input = pre_feedforward_layernorm_2(x1)
//
// Weights are native (adapter from_hf): router proj [E,H], scale [H]; gate_and_up [E,H,2I]; down [E,I,H] with
// per_expert_scale folded in. Masked tokens (mask 0) are still routed by the gate (as in NeMo) but never
// reach an expert: their output rows are exactly 0. Backward overwrites the two input gradients and
// accumulates (+=) into the parameter gradients.
#pragma once

#include <cstdint>
#include <vector>

#include "moe/dispatcher.h"
#include "ops/cpu/moe_experts.h"
#include "ops/cpu/moe_gate.h"
#include "ops/moe_block_kernel.h"

namespace g4 {

struct Gemma4MoeConfig {
  Gemma4GateConfig gate;
  ExpertsConfig experts;
};

// From the text config's hidden_size, num_experts, top_k_experts, moe_intermediate_size, rms_norm_eps; geglu;
// all experts local (set experts.start / n_local for expert parallelism). Invalid sizes are a g4::Error.
Gemma4MoeConfig gemma4_moe_config(std::int64_t hidden, std::int64_t num_experts, std::int64_t top_k,
                                  std::int64_t moe_intermediate, double rms_norm_eps,
                                  ExpertsBackend backend = ExpertsBackend::grouped);

template <class T>
struct Gemma4MoeWeights {
  const T* router_proj = nullptr;   // [E, H]
  const T* router_scale = nullptr;  // [H]
  const T* gate_and_up = nullptr;   // [n_local, H, 2I]
  const T* down = nullptr;          // [n_local, I, H]
};

template <class T>
struct Gemma4MoeGrads {
  T* router_proj = nullptr;
  T* router_scale = nullptr;
  T* gate_and_up = nullptr;
  T* down = nullptr;
};

template <class T>
struct Gemma4MoeContext {
  Gemma4GateContext<T> gate;
  std::vector<T> weights;             // [T, K] renormalised routing weights
  std::vector<std::int64_t> indices;  // [T, K]
  std::vector<T> dweights;            // scratch
  DispatchContext<T> dispatch;        // the experts' part, whichever dispatcher ran them
  // The block on a device (moe_block.h): routing and expert activations live there; reused while its
  // planned token count suffices.
  std::shared_ptr<DeviceMoeBlock> device;
};

// token_mask may be nullptr (all valid). y [T, H] overwritten.
// The gate runs here on this rank's own tokens (router weights are replicated), the experts through
// `dispatcher` (dispatcher.h; nullptr: an InProcessDispatcher); w.gate_and_up / w.down hold the dispatcher's
// local_experts(). Backward must get the same dispatcher.
template <class T>
void gemma4_moe_forward(const Gemma4MoeConfig& cfg, const Gemma4MoeWeights<T>& w, const T* gate_input,
                        const T* expert_input, const std::uint8_t* token_mask, std::int64_t tokens, T* y,
                        Gemma4MoeContext<T>* ctx, const Dispatcher<T>* dispatcher = nullptr);

// d_gate_input and d_expert_input [T, H] overwritten; grads accumulated.
template <class T>
void gemma4_moe_backward(const Gemma4MoeConfig& cfg, const Gemma4MoeWeights<T>& w, const T* expert_input,
                         Gemma4MoeContext<T>& ctx, const T* dy, T* d_gate_input, T* d_expert_input,
                         const Gemma4MoeGrads<T>& grads, const Dispatcher<T>* dispatcher = nullptr);

}  // namespace g4
