// parity_moe_cuda.h: the parity harness's MoE ops (tests/parity/moe_backend.h) on the CUDA kernels of
// ops/cuda: moe_gate_forward/backward, moe_permute and MoeExpertsCuda (bf16 activations and weights, fp32
// routing, fp32 weight gradients accumulated into zeros). Inputs go up as the device stores them (bf16 where
// it keeps bf16); results come back widened to float, indices to int64.
#pragma once

#include "ops/cuda/cuda_context.h"
#include "parity/moe_backend.h"

namespace g4::cuda::test {

class CudaMoeBackend final : public parity::MoeBackend {
 public:
  parity::GateResult gate(const parity::GateInputs& in, bool with_backward) override;
  parity::PermutationResult permute(const parity::PermutationInputs& in) override;
  parity::ExpertsResult experts(const parity::ExpertsInputs& in, bool with_backward) override;

 private:
  CudaContext ctx_;
};

}  // namespace g4::cuda::test
