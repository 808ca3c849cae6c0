// moe_gate.h (CPU twin of ops/cuda/moe_gate.h): Gemma 4's MoE router (NeMo Gemma4Gate, the note's §2),
// forward and backward on the CPU.
//
// Forward, x [T, H] (the raw residual after attention, not the experts' normed input):
//   n = x · (mean(x²) + eps)^-0.5            RMS norm without a learned scale
//   z = (n · scale) · r,  r = float(H^-0.5)   the Python float H**-0.5 rounded once to T
//   logits = z · projᵀ                        proj [E, H], no bias
//   p = softmax(logits) over all E experts
//   (w, idx) = top-k of p, sorted descending (ties: the lower expert id first)
//   w = w / max(Σ w, 1e-20)
// per_expert_scale is NOT applied (the adapter folds it into down_projs); HF's router multiplies it in
// afterwards, which apply_per_expert_scale reproduces.
//
// Backward: from dL/dw [T, K] to dL/dx (overwritten), dL/dscale and dL/dproj (accumulated, +=). The indices
// carry no gradient. The whole computation runs in T (fp32 for float; sums of a row in double).
#pragma once

#include <cstdint>
#include <vector>

namespace g4 {

struct Gemma4GateConfig {
  std::int64_t hidden = 0;       // H
  std::int64_t num_experts = 0;  // E
  std::int64_t top_k = 0;        // K
  double eps = 1e-6;             // rms_norm_eps
};

// Saved by forward for backward.
template <class T>
struct Gemma4GateContext {
  std::int64_t tokens = 0;
  std::vector<T> normed;              // [T, H]  n
  std::vector<T> inv_rms;             // [T]
  std::vector<T> probs;               // [T, E]  softmax
  std::vector<std::int64_t> indices;  // [T, K]
  std::vector<T> topk_sum;            // [T]     Σ of the selected probs before the 1e-20 floor
};

// H^-0.5 as Python computes it (double pow), rounded once to T.
template <class T>
T gemma4_router_root_size(std::int64_t hidden);

// weights [T, K], indices [T, K]; ctx may be nullptr for inference.
template <class T>
void moe_gate_forward(const Gemma4GateConfig& cfg, const T* x, const T* proj, const T* scale,
                      std::int64_t tokens, T* weights, std::int64_t* indices, Gemma4GateContext<T>* ctx);

template <class T>
void moe_gate_backward(const Gemma4GateConfig& cfg, const T* proj, const T* scale,
                       const Gemma4GateContext<T>& ctx, const T* dweights, T* dx, T* dscale, T* dproj);

// HF's last router step: weights[t, k] *= per_expert_scale[indices[t, k]].
template <class T>
void apply_per_expert_scale(const T* per_expert_scale, const std::int64_t* indices, std::int64_t tokens,
                            std::int64_t top_k, T* weights);

// Top-k of one row, sorted descending, ties broken by the lower index; NaN ranks below everything.
template <class T>
void topk_descending(const T* row, std::int64_t n, std::int64_t k, std::int64_t* out);

}  // namespace g4
