// moe_gate.h: Gemma4Gate (the MoE router) forward and backward on the GPU.
//
// Forward, x [T, H] bf16 (the raw residual), proj [E, H] fp32, scale [H] fp32:
//   r[t]      = (mean_h x[t,h]^2 + eps)^-1/2                          (fp32)
//   ns[t,h]   = float(bf16(x[t,h] * r[t])) * scale[h] * H^-0.5         (the norm's output is rounded to bf16,
//   as
//                                                                       HF/NeMo return it in x's dtype)
//   logits    = ns @ proj^T  [T, E] fp32 (cuBLAS SGEMM, no TF32);  probs = softmax(logits) fp32
//   indices   = top-k of probs (descending; ties to the lower expert id), int32 [T, K]
//   weights   = bf16-rounded( p_k / max(sum_k p_k, 1e-20) ), stored as fp32 [T, K] (NeMo returns w in x's
//   dtype)
// Backward, from d_weights [T, K] fp32 (the bf16 rounding passes gradients straight through):
//   dx [T, H] fp32 (overwritten); d_proj [E, H] += ; d_scale [H] += (fp32 parameter grads accumulate).
#pragma once

#include <cstdint>

#include <cuda_bf16.h>

#include "ops/cuda/cuda_context.h"

namespace g4::cuda {

struct GateShape {
  std::int64_t tokens;
  int hidden, experts, top_k;
  float eps;
};

// What the forward keeps for the backward (device memory the caller owns).
struct GateSaved {
  float* rms;      // [T]
  float* ns;       // [T, H]  normed, scaled router input
  float* logits;   // [T, E]
  int* indices;    // [T, K]
  float* weights;  // [T, K]
};

// Scratch the backward needs, in floats.
std::int64_t moe_gate_backward_scratch_floats(const GateShape& s);

void moe_gate_forward(CudaContext& ctx, const GateShape& s, const __nv_bfloat16* x, const float* proj,
                      const float* scale, const GateSaved& saved);

void moe_gate_backward(CudaContext& ctx, const GateShape& s, const __nv_bfloat16* x, const float* proj,
                       const float* scale, const GateSaved& saved, const float* d_weights, float* scratch,
                       float* dx, float* d_proj, float* d_scale);

}  // namespace g4::cuda
