#include "core/tensor.h"

#include <unistd.h>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <sstream>

#include "core/checked_math.h"
#include "core/error.h"
#include "core/host_memory.h"

namespace g4 {

namespace {}  // namespace

std::uint64_t physical_memory_bytes() {
  static const std::uint64_t bytes = [] {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    if (pages <= 0 || page <= 0) return std::uint64_t{0};
    std::uint64_t out = 0;
    if (__builtin_mul_overflow(static_cast<std::uint64_t>(pages), static_cast<std::uint64_t>(page), &out))
      return std::numeric_limits<std::uint64_t>::max();
    return out;
  }();
  return bytes;
}

std::int64_t shape_numel(const Shape& shape) {
  return checked_numel(shape);
}

std::string shape_str(const Shape& shape) {
  std::ostringstream out;
  out << '[';
  for (std::size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

Tensor::Tensor(DType dtype, Shape shape) : Tensor(dtype, std::move(shape), host_allocator()) {}

Tensor::Tensor(DType dtype, Shape shape, Allocator& allocator)
    : dtype_(dtype), device_(allocator.device()), allocator_(&allocator), shape_(std::move(shape)) {
  numel_ = shape_numel(shape_);  // checked: a g4::Error naming the shape when the count leaves int64
  // Checked here once, so nbytes() cannot overflow for any constructed tensor.
  const std::uint64_t bytes =
      checked_nbytes(numel_, dtype_size(dtype_), "tensor of shape ", shape_str(shape_));
  // Refused before any allocation, naming the shape: a host tensor larger than the machine's memory.
  const std::uint64_t memory_bytes = physical_memory_bytes();
  check(device_ != Device::cpu || memory_bytes == 0 || bytes <= memory_bytes, "a ", dtype_name(dtype_),
        " tensor of shape ", shape_str(shape_), " needs ", bytes, " bytes, more than this machine's memory (",
        memory_bytes, " bytes)");
  buffer_ = allocator.allocate(bytes);
}

// On every element access: the message (shape_str) is built only when the check fails.
void Tensor::require_host(const char* what) const {
  if (device_ != Device::cpu)
    fail(what, " of a tensor of shape ", shape_str(shape_), " on the ", device_name(device_),
         " device: copy it to the host first (Tensor::to)");
}

std::byte* Tensor::bytes() {
  require_host("host access");
  return buffer_.get();
}

const std::byte* Tensor::bytes() const {
  require_host("host access");
  return buffer_.get();
}

Tensor Tensor::to(Allocator& allocator) const {
  Tensor out(dtype_, shape_, allocator);
  const std::size_t n = nbytes();
  if (n == 0) return out;
  if (device_ == Device::cpu) {
    allocator.copy_from_host(out.data(), buffer_.get(), n);
  } else if (allocator.device() == Device::cpu) {
    allocator_->copy_to_host(out.data(), buffer_.get(), n);
  } else {  // device to device: through the host (no kernel path needs it yet)
    std::unique_ptr<std::byte[]> staging(new std::byte[n]);
    allocator_->copy_to_host(staging.get(), buffer_.get(), n);
    allocator.copy_from_host(out.data(), staging.get(), n);
  }
  return out;
}

Tensor Tensor::from_bytes(DType dtype, Shape shape, const void* bytes) {
  Tensor t(dtype, std::move(shape));
  if (t.nbytes()) std::memcpy(t.bytes(), bytes, t.nbytes());
  return t;
}

Tensor Tensor::from_floats(Shape shape, const std::vector<float>& values) {
  Tensor t(DType::f32, std::move(shape));
  check(static_cast<std::int64_t>(values.size()) == t.numel(), "from_floats: ", values.size(),
        " values for shape ", shape_str(t.shape()));
  if (!values.empty()) std::memcpy(t.bytes(), values.data(), t.nbytes());
  return t;
}

std::int64_t Tensor::dim(int axis) const {
  const int r = rank();
  const int a = axis < 0 ? axis + r : axis;
  if (a < 0 || a >= r) fail("axis ", axis, " out of range for shape ", shape_str(shape_));
  return shape_[a];
}

float* Tensor::f32() {
  check(dtype_ == DType::f32, "expected an F32 tensor, got ", dtype_name(dtype_));
  require_host("f32()");
  return reinterpret_cast<float*>(buffer_.get());
}
const float* Tensor::f32() const {
  return const_cast<Tensor*>(this)->f32();
}
double* Tensor::f64() {
  check(dtype_ == DType::f64, "expected an F64 tensor, got ", dtype_name(dtype_));
  require_host("f64()");
  return reinterpret_cast<double*>(buffer_.get());
}
const double* Tensor::f64() const {
  return const_cast<Tensor*>(this)->f64();
}
std::int64_t* Tensor::i64() {
  check(dtype_ == DType::i64, "expected an I64 tensor, got ", dtype_name(dtype_));
  require_host("i64()");
  return reinterpret_cast<std::int64_t*>(buffer_.get());
}
const std::int64_t* Tensor::i64() const {
  return const_cast<Tensor*>(this)->i64();
}

Tensor Tensor::clone() const {
  return from_bytes(dtype_, shape_, bytes());
}

Tensor Tensor::reshaped(Shape shape) const {
  if (shape_numel(shape) != numel_) fail("cannot reshape ", shape_str(shape_), " to ", shape_str(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::rows(std::int64_t first, std::int64_t count) const {
  check(rank() >= 1 && first >= 0 && count >= 0 && first <= shape_[0] - count, "rows [", first, ", ",
        first + count, ") of a tensor ", shape_str(shape_));
  Tensor t = *this;
  t.shape_[0] = count;
  t.numel_ = shape_numel(t.shape_);
  const std::size_t row_bytes = shape_[0] == 0 ? 0 : nbytes() / static_cast<std::size_t>(shape_[0]);
  t.buffer_ =
      std::shared_ptr<std::byte[]>(buffer_, buffer_.get() + static_cast<std::size_t>(first) * row_bytes);
  return t;
}

Tensor Tensor::to_f32() const {
  Tensor out(DType::f32, shape_);
  float* dst = out.f32();
  const std::byte* src = bytes();
  switch (dtype_) {
    case DType::f32:
      return clone();
    case DType::f64:
      for (std::int64_t i = 0; i < numel_; ++i)
        dst[i] = static_cast<float>(reinterpret_cast<const double*>(src)[i]);
      return out;
    case DType::bf16:
      for (std::int64_t i = 0; i < numel_; ++i)
        dst[i] = bf16_to_f32(reinterpret_cast<const std::uint16_t*>(src)[i]);
      return out;
    case DType::f16:
      for (std::int64_t i = 0; i < numel_; ++i)
        dst[i] = f16_to_f32(reinterpret_cast<const std::uint16_t*>(src)[i]);
      return out;
    default:
      fail("cannot convert a ", dtype_name(dtype_), " tensor to F32");
  }
}

Tensor Tensor::to_dtype(DType dtype) const {
  check(dtype_ == DType::f32, "to_dtype converts from F32, got ", dtype_name(dtype_));
  if (dtype == DType::f32) return clone();
  Tensor out(dtype, shape_);
  const float* src = f32();
  const std::int64_t n = numel_;
  switch (dtype) {
    case DType::f64: {
      double* dst = out.f64();
#pragma omp parallel for schedule(static) if (n > (1 << 20))
      for (std::int64_t i = 0; i < n; ++i) dst[i] = src[i];
      return out;
    }
    case DType::bf16: {
      auto* dst = reinterpret_cast<std::uint16_t*>(out.bytes());
#pragma omp parallel for schedule(static) if (n > (1 << 20))
      for (std::int64_t i = 0; i < n; ++i) dst[i] = f32_to_bf16(src[i]);
      return out;
    }
    case DType::f16: {
      auto* dst = reinterpret_cast<std::uint16_t*>(out.bytes());
#pragma omp parallel for schedule(static) if (n > (1 << 20))
      for (std::int64_t i = 0; i < n; ++i) dst[i] = f32_to_f16(src[i]);
      return out;
    }
    default:
      fail("cannot convert F32 to ", dtype_name(dtype));
  }
}

}  // namespace g4
