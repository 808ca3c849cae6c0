// grouped_gemm.h: row-major GEMMs for float and double (OpenBLAS), and the grouped GEMM of MoE experts:
// the rows of an activation matrix are split into contiguous segments, one per expert, by int32 *end*
// offsets (offsets[g] = rows of segments 0..g, as torch._grouped_mm takes them), and segment g is multiplied
// by weight matrix g of a stacked [groups, K, N] tensor.
//
// Invariants: functions named *_accumulate add into their output (+=); the others overwrite it. Empty
// segments are skipped (their output rows do not exist; their weight gradients are left untouched).
// No function allocates.
#pragma once

#include <cstdint>

namespace g4 {

// c[M,N] = op(a) · op(b) (+ c when accumulate); op(a) is a[M,K] or, transposed, a[K,M]; op(b) is b[K,N] or
// b[N,K].
template <class T>
void gemm(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K, const T* a, const T* b,
          T* c, bool accumulate);

// y[seg g] = x[seg g] · w[g]          x [M,K], w [groups,K,N], y [M,N]
template <class T>
void grouped_gemm_nn(const T* x, const T* w, T* y, const std::int32_t* end_offsets, std::int64_t groups,
                     std::int64_t K, std::int64_t N);

// dx[seg g] = dy[seg g] · w[g]ᵀ       dy [M,N], w [groups,K,N], dx [M,K]
template <class T>
void grouped_gemm_nt(const T* dy, const T* w, T* dx, const std::int32_t* end_offsets, std::int64_t groups,
                     std::int64_t K, std::int64_t N);

// dw[g] += x[seg g]ᵀ · dy[seg g]      x [M,K], dy [M,N], dw [groups,K,N]
template <class T>
void grouped_gemm_tn_accumulate(const T* x, const T* dy, T* dw, const std::int32_t* end_offsets,
                                std::int64_t groups, std::int64_t K, std::int64_t N);

}  // namespace g4
