// grouped_gemm_ws.h: the warp-specialised persistent wgmma kernels behind grouped_gemm.h
// (grouped_gemm_ws.cu): one producer warpgroup (TMA and cp.async into an mbarrier ring), two wgmma consumer
// warpgroups, 128 x 256 tiles, one CTA per SM. Same arguments and contract as grouped_gemm.h, whose entry
// points check the arguments and call these.
#pragma once

#include <cuda_runtime.h>

#include "ops/cuda/grouped_gemm.h"

namespace g4::cuda {

void grouped_gemm_rows_ws(const GroupedGemmRows& args, cudaStream_t stream);
void grouped_gemm_weight_grad_ws(const GroupedGemmWeightGrad& args, cudaStream_t stream);

}  // namespace g4::cuda
