// checked_math.h: integer arithmetic on sizes that come from outside input (config.json, safetensors
// headers, input files), where a silent wrap-around would turn a hostile or mistyped size into a small or
// negative one.
//
// Invariant: every function here either returns the exact mathematical result or throws a one-line g4::Error
// that starts with the caller's context (any streamable parts, as for g4::fail) and says which operation
// overflowed. The context is only formatted on failure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <sstream>
#include <string>

#include "core/error.h"

namespace g4 {

namespace checked_detail {

template <class... Context>
[[noreturn]] void overflow(const char* op, const std::string& operands, const Context&... context) {
  if constexpr (sizeof...(Context) == 0) {
    fail(op, " overflows: ", operands);
  } else {
    fail(context..., ": ", op, " overflows: ", operands);
  }
}

inline std::string dims_str(std::span<const std::int64_t> dims) {
  std::ostringstream out;
  out << '[';
  for (std::size_t i = 0; i < dims.size(); ++i) out << (i ? ", " : "") << dims[i];
  out << ']';
  return out.str();
}

template <class A, class B>
std::string pair_str(A a, const char* sign, B b) {
  std::ostringstream out;
  out << a << sign << b;
  return out.str();
}

}  // namespace checked_detail

// a * b, or a g4::Error "<context>: size product overflows: a x b" when the result leaves int64.
template <class... Context>
std::int64_t checked_mul(std::int64_t a, std::int64_t b, const Context&... context) {
  std::int64_t out = 0;
  if (__builtin_mul_overflow(a, b, &out))
    checked_detail::overflow("size product", checked_detail::pair_str(a, " x ", b), context...);
  return out;
}

template <class... Context>
std::uint64_t checked_mul(std::uint64_t a, std::uint64_t b, const Context&... context) {
  std::uint64_t out = 0;
  if (__builtin_mul_overflow(a, b, &out))
    checked_detail::overflow("size product", checked_detail::pair_str(a, " x ", b), context...);
  return out;
}

template <class... Context>
std::int64_t checked_add(std::int64_t a, std::int64_t b, const Context&... context) {
  std::int64_t out = 0;
  if (__builtin_add_overflow(a, b, &out))
    checked_detail::overflow("size sum", checked_detail::pair_str(a, " + ", b), context...);
  return out;
}

template <class... Context>
std::uint64_t checked_add(std::uint64_t a, std::uint64_t b, const Context&... context) {
  std::uint64_t out = 0;
  if (__builtin_add_overflow(a, b, &out))
    checked_detail::overflow("size sum", checked_detail::pair_str(a, " + ", b), context...);
  return out;
}

// The element count of a shape: the product of its dimensions. A negative dimension or a product beyond
// int64 is a g4::Error naming the shape.
template <class... Context>
std::int64_t checked_numel(std::span<const std::int64_t> dims, const Context&... context) {
  std::int64_t n = 1;
  for (std::int64_t d : dims) {
    if (d < 0) {
      if constexpr (sizeof...(Context) == 0) {
        fail("negative dimension in shape ", checked_detail::dims_str(dims));
      } else {
        fail(context..., ": negative dimension in shape ", checked_detail::dims_str(dims));
      }
    }
    if (__builtin_mul_overflow(n, d, &n))
      checked_detail::overflow("element count", "shape " + checked_detail::dims_str(dims), context...);
  }
  return n;
}

// numel * element_size as a byte count, or a g4::Error when it leaves uint64 (numel must not be negative).
template <class... Context>
std::uint64_t checked_nbytes(std::int64_t numel, std::size_t element_size, const Context&... context) {
  if (numel < 0) {
    if constexpr (sizeof...(Context) == 0) {
      fail("negative element count ", numel);
    } else {
      fail(context..., ": negative element count ", numel);
    }
  }
  std::uint64_t out = 0;
  if (__builtin_mul_overflow(static_cast<std::uint64_t>(numel), static_cast<std::uint64_t>(element_size),
                             &out))
    checked_detail::overflow("byte size", checked_detail::pair_str(numel, " elements x ", element_size),
                             context...);
  return out;
}

}  // namespace g4
