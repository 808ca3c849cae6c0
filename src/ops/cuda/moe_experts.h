// moe_experts.h: the grouped-experts part of the Gemma 4 MoE block on the GPU (NeMo's GroupedExperts torch_mm
// path: permute, grouped GEMM, routing-weighted GEGLU, grouped GEMM, combine), forward and backward.
//
// Native layout: gate_up [E, H, 2I] (columns [0, I) are the gate, [I, 2I) the up projection), down [E, I, H]
// with per_expert_scale folded in; bf16 weights and activations, fp32 accumulation. Routing: weights [T, K]
// fp32 and indices [T, K] int32 from the gate; mask [T] (1 = real token) or null. A masked token, or a choice
// whose index is outside [0, E), contributes nothing; a token with no live choice gets y = 0 and dx = 0.
// Invariants: forward saves what backward needs inside this object (one forward, then at most one backward)
// and keeps a pointer to x: x must not change between a forward and its backward; backward overwrites dx and
// d_weights, and either overwrites bf16 weight grads or adds into fp32 ones (ExpertGrads::fp32_accumulate).
// No host synchronisation in forward or backward.
#pragma once

#include <cstdint>

#include <cuda_bf16.h>

#include "ops/cuda/cuda_context.h"
#include "ops/cuda/device_buffer.h"
#include "ops/cuda/moe_permute.h"

namespace g4::cuda {

struct ExpertShape {
  std::int64_t tokens;  // the most tokens a forward will see (buffers are planned for it)
  int hidden, inter, experts, top_k;
};

struct ExpertWeights {
  const __nv_bfloat16* gate_up;  // [E, H, 2I]
  const __nv_bfloat16* down;     // [E, I, H]
};

struct ExpertGrads {
  void* d_gate_up;       // [E, H, 2I]
  void* d_down;          // [E, I, H]
  bool fp32_accumulate;  // false: bf16, overwritten; true: fp32, added into
};

// Where the rows of x (forward) and dy (backward) are put in expert order. fused: inside the grouped GEMMs'
// loads (no copy; the GEMMs then read those rows by cp.async). materialised: by a gather kernel into a copy
// first (tokens * K * H bf16 more device memory, the copy of x kept from the forward to the backward; the
// GEMMs then read every operand in place, by TMA). automatic: materialised from gather_materialise_rows rows
// (tokens * K) up, fused below. Measured on the H200 (docs/BENCHMARKS.md, "Gathers"): at 16384 tokens
// materialising was faster in all four measurements (2-8%), at 4096 tokens 3-5% slower with the real gate's
// routing. The default is automatic (its test, MoeExperts.AutomaticGatherModeMatchesFusedAndMaterialised,
// passed on an H100 on 2026-12-07).
enum class GatherMode { automatic, fused, materialised };
inline constexpr std::int64_t gather_materialise_rows = 65536;
// Whether a layer of `rows` rows (tokens * K) fuses its gathers under `mode`.
inline bool gathers_fused(GatherMode mode, std::int64_t rows) {
  return mode == GatherMode::fused || (mode == GatherMode::automatic && rows < gather_materialise_rows);
}

class MoeExpertsCuda {
 public:
  MoeExpertsCuda(CudaContext& ctx, const ExpertShape& shape);

  // y [tokens, H] bf16 (overwritten). tokens <= shape.tokens.
  void forward(std::int64_t tokens, const __nv_bfloat16* x, const float* weights, const int* indices,
               const std::uint8_t* mask, const ExpertWeights& w, __nv_bfloat16* y);
  // dy [tokens, H] -> dx [tokens, H] bf16, d_weights [tokens, K] fp32 (both overwritten), and the weight
  // grads.
  void backward(const __nv_bfloat16* dy, const ExpertWeights& w, const ExpertGrads& grads, __nv_bfloat16* dx,
                float* d_weights);

  // Device array [E + 1] of segment offsets of the last forward (offsets[E] = live slots).
  const int* expert_offsets() const { return perm_.offsets; }
  // Device array [tokens * K] of the last forward: the token each permuted row reads (live rows only).
  const int* row_token() const { return perm_.row_token; }
  // See GatherMode. When the gathers are fused, the forward's x must stay valid until the backward (it must
  // anyway: see the invariants above).
  void set_gather_mode(GatherMode mode) { gather_mode_ = mode; }
  GatherMode gather_mode() const { return gather_mode_; }
  // Whether a forward of `tokens` tokens fuses its gathers under the mode in force.
  bool gathers_fused(std::int64_t tokens) const {
    return ::g4::cuda::gathers_fused(gather_mode_, tokens * shape_.top_k);
  }
  // Bytes of device memory this object holds.
  std::size_t device_bytes() const { return arena_.capacity() + x_perm_buffer_.bytes(); }

 private:
  CudaContext& ctx_;
  ExpertShape shape_;
  DeviceArena arena_;
  std::int64_t tokens_ = 0;
  GatherMode gather_mode_ = GatherMode::automatic;
  bool fused_gather_ = true;          // the choice of the last forward (its backward follows it)
  const __nv_bfloat16* x_ = nullptr;  // the forward's X operand (x or x_perm_) and its row map
  const int* x_rows_ = nullptr;
  int* scratch_ = nullptr;
  MoePermutation perm_{};
  DeviceBuffer x_perm_buffer_;       // only with fused gather off
  __nv_bfloat16* x_perm_ = nullptr;  // [T K, H]
  __nv_bfloat16* h_ = nullptr;       // [T K, 2I]
  __nv_bfloat16* a_ = nullptr;       // [T K, I]
  __nv_bfloat16* rows_ = nullptr;    // [T K, H]: o in forward, dO then dX in backward
  __nv_bfloat16* da_ = nullptr;      // [T K, I]
  __nv_bfloat16* dh_ = nullptr;      // [T K, 2I]
  float* dp_ = nullptr;              // [T K]
};

}  // namespace g4::cuda
