// finite.h: finding NaN and infinity in tensors of any float dtype without converting them (the exponent bits
// all set means NaN or +-Inf in bf16, f16, f32 and f64 alike).
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace g4 {

// Index of the first element of `n` that is NaN or infinite, or -1 when all are finite (or `dtype` is not a
// float type).
std::int64_t first_non_finite(const void* data, DType dtype, std::int64_t n);

}  // namespace g4
