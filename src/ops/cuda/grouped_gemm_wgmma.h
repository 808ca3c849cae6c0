// grouped_gemm_wgmma.h: the Hopper (wgmma) implementations behind grouped_gemm.h; same arguments and
// contract. block_n is 128 or 256 (tile width of the variable-rows GEMM).
#pragma once

#include <cuda_runtime.h>

#include "ops/cuda/grouped_gemm.h"

namespace g4::cuda {

enum class WgmmaSchedule { standard, in_flight, wide };

void grouped_gemm_rows_wgmma(const GroupedGemmRows& args, WgmmaSchedule schedule, cudaStream_t stream);
void grouped_gemm_weight_grad_wgmma(const GroupedGemmWeightGrad& args, WgmmaSchedule schedule,
                                    cudaStream_t stream);

// Warp-specialised persistent kernels (grouped_gemm_ws.cu): one producer warpgroup (cp.async into an mbarrier
// ring), two wgmma consumer warpgroups, 128 x 256 tiles, one CTA per SM.
// store16: the rows GEMM's bf16 output stored 16 bytes at a time after a quad transpose (policy 7).
void grouped_gemm_rows_ws(const GroupedGemmRows& args, bool store16, cudaStream_t stream);
void grouped_gemm_weight_grad_ws(const GroupedGemmWeightGrad& args, cudaStream_t stream);

}  // namespace g4::cuda
