// tensor.h: Tensor, an owning, contiguous, row-major n-d array on the host.
//
// Invariants: the buffer holds exactly numel() * dtype_size(dtype()) bytes, 64-byte aligned; copies of a
// Tensor share the buffer (use clone() for a deep copy); a default-constructed Tensor is empty (numel 0,
// no buffer).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace g4 {

using Shape = std::vector<std::int64_t>;

std::int64_t shape_numel(const Shape& shape);
std::string shape_str(const Shape& shape);  // "[2, 3, 4]"

class Tensor {
 public:
  Tensor() = default;
  Tensor(DType dtype, Shape shape);  // zero-filled

  static Tensor zeros(Shape shape, DType dtype = DType::f32) { return Tensor(dtype, std::move(shape)); }
  // Copies `bytes` raw bytes laid out as dtype/shape (bytes must be numel * dtype_size long).
  static Tensor from_bytes(DType dtype, Shape shape, const void* bytes);
  static Tensor from_floats(Shape shape, const std::vector<float>& values);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  std::int64_t dim(int axis) const;  // negative axes count from the end
  std::int64_t numel() const { return numel_; }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel_) * dtype_size(dtype_); }
  bool empty() const { return numel_ == 0; }

  std::byte* bytes() { return buffer_.get(); }
  const std::byte* bytes() const { return buffer_.get(); }
  // Typed access; checks that T matches the dtype's size class (f32 <-> float, f64 <-> double, ...).
  float* f32();
  const float* f32() const;
  double* f64();
  const double* f64() const;
  std::int64_t* i64();
  const std::int64_t* i64() const;

  Tensor clone() const;
  // Same buffer, new shape with the same numel.
  Tensor reshaped(Shape shape) const;
  // Converts any floating dtype to f32 (bf16/f16 widen exactly; f64 rounds to nearest).
  Tensor to_f32() const;
  // Converts f32 to `dtype` (any floating dtype), rounding to nearest even.
  Tensor to_dtype(DType dtype) const;

 private:
  DType dtype_ = DType::f32;
  Shape shape_;
  std::int64_t numel_ = 0;
  std::shared_ptr<std::byte[]> buffer_;
};

}  // namespace g4
