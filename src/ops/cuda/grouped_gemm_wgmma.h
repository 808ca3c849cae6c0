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
// The rows GEMM's epilogue: store4, each thread's bf16 pairs stored 4 bytes at a time (policy 5); store16,
// 16 bytes at a time after a quad transpose (policies 7, 8); staged, through shared memory and bulk copies
// (policy 9). a_by_tma: an A read in place comes by TMA in the tiles inside their group (policies 8, 9).
enum class WsEpilogue { store4, store16, staged };
// pair: staged kernels in clusters of 2 CTAs, the two m-tiles of one expert sharing each weight tile through
// TMA multicast (policy 10).
struct RowsWsOptions {
  WsEpilogue epilogue = WsEpilogue::store16;
  bool a_by_tma = false;
  bool pair = false;
};
void grouped_gemm_rows_ws(const GroupedGemmRows& args, RowsWsOptions options, cudaStream_t stream);
// The number of 2-CTA clusters that fit on the device at once, as found by the last paired launch (0 before
// any); the paired kernels run on twice that many CTAs at most. For the benchmark.
int grouped_gemm_ws_pair_cluster_limit();
// staged: bf16 outputs through the staged epilogue (policy 9); fp32 ones are stored from registers.
void grouped_gemm_weight_grad_ws(const GroupedGemmWeightGrad& args, bool staged, cudaStream_t stream);

}  // namespace g4::cuda
