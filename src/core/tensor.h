// tensor.h: Tensor, an owning, contiguous, row-major n-d array on a device (the host, or a GPU).
//
// Invariants: the buffer holds exactly numel() * dtype_size(dtype()) bytes, 64-byte aligned, allocated by the
// Allocator of the tensor's device (core/allocator.h; the host's unless one is given); copies of a Tensor
// share the buffer (use clone() for a deep copy); a default-constructed Tensor is empty (numel 0, no buffer,
// on the host). Element access (bytes(), f32(), ...) and the conversions are for host tensors: on a device
// tensor they are a g4::Error; to(allocator) moves data between devices.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/dtype.h"

namespace g4 {

using Shape = std::vector<std::int64_t>;

std::int64_t shape_numel(const Shape& shape);
std::string shape_str(const Shape& shape);  // "[2, 3, 4]"

class Tensor {
 public:
  Tensor() = default;
  Tensor(DType dtype, Shape shape);                        // zero-filled, on the host
  Tensor(DType dtype, Shape shape, Allocator& allocator);  // zero-filled, on the allocator's device

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
  Device device() const { return device_; }
  // The buffer wherever it lives (for kernels of the tensor's device); bytes() is the host-only view.
  void* data() { return buffer_.get(); }
  const void* data() const { return buffer_.get(); }

  std::byte* bytes();
  const std::byte* bytes() const;
  // Typed access; checks that T matches the dtype's size class (f32 <-> float, f64 <-> double, ...).
  float* f32();
  const float* f32() const;
  double* f64();
  const double* f64() const;
  std::int64_t* i64();
  const std::int64_t* i64() const;

  Tensor clone() const;  // host tensors
  // A copy on `allocator`'s device (host <-> device, or host to host).
  Tensor to(Allocator& allocator) const;
  // Same buffer, new shape with the same numel.
  Tensor reshaped(Shape shape) const;
  // Rows [first, first + count) of dimension 0, sharing this tensor's buffer (writes go through); its start
  // is aligned to its row size only, not to 64 bytes.
  Tensor rows(std::int64_t first, std::int64_t count) const;
  // Converts any floating dtype to f32 (bf16/f16 widen exactly; f64 rounds to nearest).
  Tensor to_f32() const;
  // Converts f32 to `dtype` (any floating dtype), rounding to nearest even.
  Tensor to_dtype(DType dtype) const;

 private:
  void require_host(const char* what) const;
  DType dtype_ = DType::f32;
  Device device_ = Device::cpu;
  const Allocator* allocator_ = nullptr;  // the device's allocator (nullptr: the host's)
  Shape shape_;
  std::int64_t numel_ = 0;
  std::shared_ptr<std::byte[]> buffer_;
};

}  // namespace g4
