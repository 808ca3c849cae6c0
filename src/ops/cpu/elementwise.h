// elementwise.h: the element-by-element CPU kernels of the op interface (ops/ops.h): sums, scaling, GEGLU,
// embedding rows and middle-axis slices. Each element is one fp32 expression, rounded as written, so results
// do not depend on the thread count (large arrays are split over OpenMP threads).
#pragma once

#include <cstdint>

namespace g4 {

void add_inplace(float* x, const float* y, std::int64_t n);               // x += y
void scale_inplace(float* x, float factor, std::int64_t n);               // x *= factor
void scale_copy(const float* x, float factor, float* y, std::int64_t n);  // y = x · factor
void clamp_inplace(float* x, float lo, float hi, std::int64_t n);         // x = min(max(x, lo), hi)
// dy = 0 where x < lo or x > hi (NaN x too)
void clamp_backward(float* dy, const float* x, float lo, float hi, std::int64_t n);

// out = gelu_tanh(gate) · up
void geglu_forward(const float* gate, const float* up, float* out, std::int64_t n);
// dgate = dout · up · gelu_tanh'(gate), dup = dout · gelu_tanh(gate) (both overwritten)
void geglu_backward(const float* gate, const float* up, const float* dout, float* dgate, float* dup,
                    std::int64_t n);

// out[t] = table[ids[t]] · scale over rows of `width`; ids already checked.
void gather_rows(const float* table, const std::int64_t* ids, std::int64_t count, std::int64_t width,
                 float scale, float* out);
// table[ids[t]] += d[t] · scale (rows in id order: a repeated id adds in token order)
void scatter_add_rows(const float* d, const std::int64_t* ids, std::int64_t count, std::int64_t width,
                      float scale, float* table);

// x [A, M, B]: out [A, B] = x[:, index, :]; and x[:, index, :] += d
void middle_slice_copy(const float* x, std::int64_t A, std::int64_t M, std::int64_t B, std::int64_t index,
                       float* out);
void middle_slice_add(float* x, std::int64_t A, std::int64_t M, std::int64_t B, std::int64_t index,
                      const float* d);

}  // namespace g4
