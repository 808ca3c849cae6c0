#include "core/tensor.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "core/error.h"

namespace g4 {

namespace {

std::shared_ptr<std::byte[]> allocate_zeroed(std::size_t bytes) {
  if (bytes == 0) return nullptr;
  const std::size_t rounded = (bytes + 63) / 64 * 64;
  void* memory = std::aligned_alloc(64, rounded);
  if (!memory) fail("out of memory allocating ", bytes, " bytes");
  // Zero in parallel chunks: a serial memset of a large activation is a visible share of a step on 16 cores.
  const std::int64_t chunks = static_cast<std::int64_t>((rounded + (1u << 20) - 1) >> 20);
#pragma omp parallel for schedule(static) if (chunks > 4)
  for (std::int64_t c = 0; c < chunks; ++c) {
    const std::size_t begin = static_cast<std::size_t>(c) << 20;
    std::memset(static_cast<char*>(memory) + begin, 0, std::min<std::size_t>(rounded - begin, 1u << 20));
  }
  return std::shared_ptr<std::byte[]>(static_cast<std::byte*>(memory), [](std::byte* p) { std::free(p); });
}

}  // namespace

std::int64_t shape_numel(const Shape& shape) {
  std::int64_t n = 1;
  for (std::int64_t d : shape) {
    check(d >= 0, "negative dimension in shape ", shape_str(shape));
    n *= d;
  }
  return n;
}

std::string shape_str(const Shape& shape) {
  std::ostringstream out;
  out << '[';
  for (std::size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

Tensor::Tensor(DType dtype, Shape shape) : dtype_(dtype), shape_(std::move(shape)) {
  numel_ = shape_numel(shape_);
  buffer_ = allocate_zeroed(nbytes());
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
  check(a >= 0 && a < r, "axis ", axis, " out of range for shape ", shape_str(shape_));
  return shape_[a];
}

float* Tensor::f32() {
  check(dtype_ == DType::f32, "expected an F32 tensor, got ", dtype_name(dtype_));
  return reinterpret_cast<float*>(buffer_.get());
}
const float* Tensor::f32() const {
  return const_cast<Tensor*>(this)->f32();
}
double* Tensor::f64() {
  check(dtype_ == DType::f64, "expected an F64 tensor, got ", dtype_name(dtype_));
  return reinterpret_cast<double*>(buffer_.get());
}
const double* Tensor::f64() const {
  return const_cast<Tensor*>(this)->f64();
}
std::int64_t* Tensor::i64() {
  check(dtype_ == DType::i64, "expected an I64 tensor, got ", dtype_name(dtype_));
  return reinterpret_cast<std::int64_t*>(buffer_.get());
}
const std::int64_t* Tensor::i64() const {
  return const_cast<Tensor*>(this)->i64();
}

Tensor Tensor::clone() const {
  return from_bytes(dtype_, shape_, bytes());
}

Tensor Tensor::reshaped(Shape shape) const {
  check(shape_numel(shape) == numel_, "cannot reshape ", shape_str(shape_), " to ", shape_str(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
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
  switch (dtype) {
    case DType::f64:
      for (std::int64_t i = 0; i < numel_; ++i) out.f64()[i] = src[i];
      return out;
    case DType::bf16:
      for (std::int64_t i = 0; i < numel_; ++i)
        reinterpret_cast<std::uint16_t*>(out.bytes())[i] = f32_to_bf16(src[i]);
      return out;
    case DType::f16:
      for (std::int64_t i = 0; i < numel_; ++i)
        reinterpret_cast<std::uint16_t*>(out.bytes())[i] = f32_to_f16(src[i]);
      return out;
    default:
      fail("cannot convert F32 to ", dtype_name(dtype));
  }
}

}  // namespace g4
