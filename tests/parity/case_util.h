// case_util.h: what the parity cases share: fixed-seed random inputs, moving a host tensor to a backend and
// back, and outputs made from scalars and host vectors.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "parity/op_cases.h"

namespace g4::parity {

// Normal(0, stddev) values from a fixed seed.
inline std::vector<float> random_values(std::size_t n, std::uint32_t seed, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

inline Tensor random_tensor(Shape shape, std::uint32_t seed, float stddev = 1.0f) {
  const auto n = static_cast<std::size_t>(shape_numel(shape));
  return Tensor::from_floats(std::move(shape), random_values(n, seed, stddev));
}

// f32 input values as the backend sees them: rounded to bf16 for a bf16 backend and its reference.
inline Tensor backend_values(const Backend& backend, const Tensor& host) {
  if (backend.dtype != DType::bf16 && !backend.bf16_inputs) return host;
  Tensor r = host.clone();
  for (std::int64_t i = 0; i < r.numel(); ++i) r.f32()[i] = round_to_bf16(r.f32()[i]);
  return r;
}

// An activation or weight on the backend's device, in its dtype (an empty tensor stays the empty host tensor:
// "no weight").
inline Tensor on(const Backend& backend, const Tensor& host) {
  if (host.empty()) return Tensor();
  const Tensor values = backend_values(backend, host);
  return (backend.dtype == DType::f32 ? values : values.to_dtype(backend.dtype)).to(*backend.allocator);
}

// A tensor that is f32 on every backend (parameter gradients, logits, optimizer state), with the values the
// backend's inputs have.
inline Tensor on_f32(const Backend& backend, const Tensor& host) {
  return host.empty() ? Tensor() : backend_values(backend, host).to(*backend.allocator);
}

// An output from a tensor on any device, in any float dtype.
inline Output output(std::string name, const Tensor& t) {
  const Tensor host = t.to(host_allocator());
  const bool bf16 = t.dtype() == DType::bf16;
  return {std::move(name), bf16 ? host.to_f32() : host, false, bf16};
}

inline Output scalar_output(std::string name, double value, bool integral = false) {
  return {std::move(name), Tensor::from_floats({1}, {static_cast<float>(value)}), integral};
}

inline Output vector_output(std::string name, const std::vector<float>& v) {
  return {std::move(name), Tensor::from_floats({static_cast<std::int64_t>(v.size())}, v)};
}

inline Output integral_output(std::string name, const std::vector<std::int64_t>& v) {
  std::vector<float> f(v.begin(), v.end());
  return {std::move(name), Tensor::from_floats({static_cast<std::int64_t>(v.size())}, f), true};
}

inline void round_all_to_bf16(std::vector<float>& v) {
  for (float& x : v) x = round_to_bf16(x);
}

}  // namespace g4::parity
