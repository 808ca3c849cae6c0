// moe_backend.h: the MoE ops of the parity harness behind one interface, on host vectors in and out, so that
// the same inputs reach the CPU (moe/, float) and the CUDA kernels (tests/cuda/parity_moe_cuda.h).
//
// Inputs are given as the device stores them: values the GPU keeps in bf16 (x, the expert weights, dy, the
// routing weights) are already bf16-rounded, so both backends start from identical numbers. Parameter
// gradients start at zero (the ops accumulate into them).
#pragma once

#include <cstdint>
#include <vector>

namespace g4::parity {

// The Gemma 4 router (ops/cpu/moe_gate.h, ops/cuda/moe_gate.h).
struct GateInputs {
  std::int64_t tokens = 0, hidden = 0, experts = 0, top_k = 0;
  float eps = 1e-6f;
  std::vector<float> x;          // [T, H]
  std::vector<float> proj;       // [E, H]
  std::vector<float> scale;      // [H]
  std::vector<float> d_weights;  // [T, K] (backward)
};
struct GateResult {
  std::vector<float> weights;         // [T, K]
  std::vector<std::int64_t> indices;  // [T, K]
  std::vector<float> dx;              // [T, H]   backward only
  std::vector<float> d_proj;          // [E, H]
  std::vector<float> d_scale;         // [H]
};

// The grouping of routed slots by expert (ops/cpu/moe_permute.h, ops/cuda/moe_permute.h).
struct PermutationInputs {
  std::int64_t tokens = 0, top_k = 0, experts = 0;
  std::vector<std::int64_t> indices;  // [T, K]; outside [0, E): a dead slot
  std::vector<float> weights;         // [T, K]
  std::vector<std::uint8_t> mask;     // [T]; 0 = padding
};
struct PermutationResult {
  std::vector<std::int64_t> offsets;    // [E + 1]: first row of each expert; offsets[E] = live rows M
  std::vector<std::int64_t> row_token;  // [M]
  std::vector<float> row_weight;        // [M]
  std::vector<std::int64_t> slot_row;   // [T * K]: row of each slot, -1 for a dead one
};

// The grouped experts (ops/cpu/moe_experts.h, ops/cuda/moe_experts.h), native layout.
struct ExpertsInputs {
  std::int64_t tokens = 0, hidden = 0, inter = 0, experts = 0, top_k = 0;
  std::vector<float> x;               // [T, H]
  std::vector<float> gate_up;         // [E, H, 2I]
  std::vector<float> down;            // [E, I, H]
  std::vector<float> weights;         // [T, K]
  std::vector<std::int64_t> indices;  // [T, K]
  std::vector<std::uint8_t> mask;     // [T]
  std::vector<float> dy;              // [T, H] (backward)
};
struct ExpertsResult {
  std::vector<float> y;          // [T, H]
  std::vector<float> dx;         // [T, H]   backward only
  std::vector<float> d_weights;  // [T, K]
  std::vector<float> d_gate_up;  // [E, H, 2I]
  std::vector<float> d_down;     // [E, I, H]
};

class MoeBackend {
 public:
  virtual ~MoeBackend() = default;
  // Forward; with_backward also runs the backward from in.d_weights (in.dy).
  virtual GateResult gate(const GateInputs& in, bool with_backward) = 0;
  virtual PermutationResult permute(const PermutationInputs& in) = 0;
  virtual ExpertsResult experts(const ExpertsInputs& in, bool with_backward) = 0;
};

// moe/ on the host, in float.
MoeBackend& cpu_moe_backend();

}  // namespace g4::parity
