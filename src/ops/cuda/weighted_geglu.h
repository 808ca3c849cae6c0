// weighted_geglu.h: the routing-weighted GEGLU of Gemma 4's experts, forward and backward (NeMo's
// weighted_bias_geglu_impl without bias), over the permuted rows i < offsets_end[0].
//
//   forward:  a[i, j] = bf16( gelu_tanh(h[i, j]) * h[i, I + j] * p[i] ),   h [rows, 2I] bf16, p fp32, a
//   [rows, I] backward: dh[i, j]     = bf16( da * p * gelu'(h1) * h2 ),  dh[i, I + j] = bf16( da * p *
//   gelu(h1) ),
//             dp[i]        = sum_j gelu(h1) * h2 * da          (fp32, overwritten)
// Everything is computed in fp32 and rounded once (as NeMo's compiled kernels do). I must be a multiple of 8.
#pragma once

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace g4::cuda {

void weighted_geglu_forward(const __nv_bfloat16* h, const float* p, const int* offsets_end,
                            std::int64_t max_rows, int inter, __nv_bfloat16* a, cudaStream_t stream);
void weighted_geglu_backward(const __nv_bfloat16* h, const float* p, const __nv_bfloat16* da,
                             const int* offsets_end, std::int64_t max_rows, int inter, __nv_bfloat16* dh,
                             float* dp, cudaStream_t stream);

}  // namespace g4::cuda
