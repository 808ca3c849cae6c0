// grouped_gemm.cu: the entry points of grouped_gemm.h: argument checks, then the warp-specialised kernels
// (grouped_gemm_ws.cu).
#include "ops/cuda/grouped_gemm.h"

#include "core/error.h"
#include "ops/cuda/grouped_gemm_ws.h"

namespace g4::cuda {

void grouped_gemm_rows(const GroupedGemmRows& a, cudaStream_t stream) {
  check(a.k % 8 == 0 && a.n % 8 == 0 && a.lda % 8 == 0 && a.ldc % 8 == 0 && a.b_group_stride % 8 == 0,
        "grouped GEMM: K, N and leading dimensions must be multiples of 8 (ops/cuda/grouped_gemm.cu)");
  if (a.max_rows == 0 || a.groups == 0) return;
  grouped_gemm_rows_ws(a, stream);
}

void grouped_gemm_weight_grad(const GroupedGemmWeightGrad& a, cudaStream_t stream) {
  check(a.mw % 8 == 0 && a.nw % 8 == 0 && a.lda % 8 == 0 && a.ldb % 8 == 0,
        "grouped GEMM: Mw, Nw and leading dimensions must be multiples of 8 (ops/cuda/grouped_gemm.cu)");
  check(!a.accumulate || a.c_is_fp32,
        "grouped GEMM: accumulation needs an fp32 output (ops/cuda/grouped_gemm.cu)");
  if (a.groups == 0) return;
  grouped_gemm_weight_grad_ws(a, stream);
}

}  // namespace g4::cuda
