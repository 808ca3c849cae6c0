// gemm.h: dense matrix products on the CPU (fp32, OpenBLAS), in the layouts the model uses.
//
// Linear layers keep Hugging Face's [out, in] weight layout: y = x · wᵀ. All matrices are row-major and
// contiguous. Functions with `accumulate` add into the output (+=) instead of overwriting it.
#pragma once

#include <cstdint>

namespace g4 {

// y[M,N] = x[M,K] · w[N,K]ᵀ
void linear_forward(const float* x, const float* w, float* y, std::int64_t M, std::int64_t N, std::int64_t K,
                    bool accumulate = false);

// c[M,N] = a[M,K] · b[K,N]
void matmul_nn(const float* a, const float* b, float* c, std::int64_t M, std::int64_t N, std::int64_t K,
               bool accumulate = false);

// c[M,N] = a[K,M]ᵀ · b[K,N]   (weight gradients: dW = dyᵀ · x)
void matmul_tn(const float* a, const float* b, float* c, std::int64_t M, std::int64_t N, std::int64_t K,
               bool accumulate = false);

}  // namespace g4
