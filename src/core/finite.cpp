#include "core/finite.h"

#include <cstring>

namespace g4 {

namespace {

template <class Bits>
std::int64_t first_with_exponent(const void* data, std::int64_t n, Bits exponent_mask) {
  const unsigned char* bytes = static_cast<const unsigned char*>(data);
  for (std::int64_t i = 0; i < n; ++i) {
    Bits b;
    std::memcpy(&b, bytes + static_cast<std::size_t>(i) * sizeof(Bits), sizeof b);  // any alignment
    if ((b & exponent_mask) == exponent_mask) return i;
  }
  return -1;
}

}  // namespace

std::int64_t first_non_finite(const void* data, DType dtype, std::int64_t n) {
  switch (dtype) {
    case DType::bf16:
      return first_with_exponent<std::uint16_t>(data, n, 0x7f80u);
    case DType::f16:
      return first_with_exponent<std::uint16_t>(data, n, 0x7c00u);
    case DType::f32:
      return first_with_exponent<std::uint32_t>(data, n, 0x7f800000u);
    case DType::f64:
      return first_with_exponent<std::uint64_t>(data, n, 0x7ff0000000000000ull);
    default:
      return -1;
  }
}

}  // namespace g4
