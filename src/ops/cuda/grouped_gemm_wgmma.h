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

}  // namespace g4::cuda
