// dtype.h: element types that g4moe reads and writes, their sizes and names, and the bf16/f16 <-> f32
// conversions. Conversions round to nearest even (as PyTorch does) and keep NaN a NaN.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace g4 {

enum class DType { bf16, f16, f32, f64, i32, i64, boolean, u8 };

std::size_t dtype_size(DType dtype);
// The safetensors spelling: "BF16", "F16", "F32", "F64", "I32", "I64", "BOOL", "U8".
std::string_view dtype_name(DType dtype);
std::optional<DType> dtype_from_name(std::string_view name);
bool dtype_is_float(DType dtype);

inline float bf16_to_f32(std::uint16_t bits) {
  std::uint32_t wide = static_cast<std::uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &wide, sizeof value);
  return value;
}

inline std::uint16_t f32_to_bf16(float value) {
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u)
    return static_cast<std::uint16_t>((bits >> 16) | 0x40u);  // quiet NaN
  std::uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>((bits + rounding) >> 16);
}

// Rounds a float to the nearest bf16 value and returns it as a float.
inline float round_to_bf16(float value) {
  return bf16_to_f32(f32_to_bf16(value));
}

float f16_to_f32(std::uint16_t bits);
std::uint16_t f32_to_f16(float value);

}  // namespace g4
