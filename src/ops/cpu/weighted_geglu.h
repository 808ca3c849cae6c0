// weighted_geglu.h: Gemma 4's routing-weighted expert activation on the CPU, forward and backward (the CPU
// twin of ops/cuda/weighted_geglu.h): out[r, j] = gelu_tanh(h[r, j]) · h[r, I + j] · w[r].
//
// Layout: h [rows, 2I] holds two concatenated halves, columns [0, I) the gate and [I, 2I) the up projection;
// w [rows] is each row's routing weight (nullptr means 1); out [rows, I].
//
// Invariants: forward overwrites `out`; backward overwrites `dh` and `dw` (dw may be nullptr). The whole
// expression of a row element is evaluated in double and rounded once to T, for T = float and T = double (the
// float64 instantiation is what the finite-difference test checks).
#pragma once

#include <cstdint>

namespace g4 {

template <class T>
void weighted_geglu_forward(const T* h, const T* w, std::int64_t rows, std::int64_t inter, T* out);

// Given dout = dL/dout [rows, I]: dh = dL/dh [rows, 2I], dw[r] = Σ_j gelu(h[r, j]) · h[r, I + j] · dout[r,
// j].
template <class T>
void weighted_geglu_backward(const T* h, const T* w, const T* dout, std::int64_t rows, std::int64_t inter,
                             T* dh, T* dw);

}  // namespace g4
