// cuda_test_util.h: helpers for the CUDA parity tests: skip without a device, host<->device copies, bf16
// rounding of random inputs, poisoning outputs (so an unwritten element shows as NaN) and the relative
// Frobenius error.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include <cuda_bf16.h>

#include "core/cuda/cuda_check.h"
#include "core/dtype.h"
#include "ops/cuda/cuda_context.h"
#include "ops/cuda/device_buffer.h"

namespace g4::cuda::test {

#define G4_SKIP_WITHOUT_CUDA()                                                                  \
  do {                                                                                          \
    if (!::g4::cuda::cuda_device_available()) GTEST_SKIP() << "no CUDA device on this machine"; \
  } while (0)

// Random values rounded to bf16 (so host and device start from identical numbers).
inline std::vector<float> random_bf16_values(std::size_t n, std::mt19937& rng, float stddev = 1.0f) {
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = round_to_bf16(dist(rng));
  return v;
}

inline DeviceBuffer to_device_bf16(const std::vector<float>& v) {
  std::vector<std::uint16_t> bits(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) bits[i] = f32_to_bf16(v[i]);
  DeviceBuffer d(bits.size() * 2 + 16);
  G4_CUDA_CHECK(cudaMemcpy(d.data(), bits.data(), bits.size() * 2, cudaMemcpyHostToDevice));
  G4_CUDA_CHECK(cudaStreamSynchronize(cudaStreamLegacy));  // there for kernels on any stream
  return d;
}

template <class T>
DeviceBuffer to_device(const std::vector<T>& v) {
  DeviceBuffer d(v.size() * sizeof(T) + 16);
  G4_CUDA_CHECK(cudaMemcpy(d.data(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  G4_CUDA_CHECK(cudaStreamSynchronize(cudaStreamLegacy));  // there for kernels on any stream
  return d;
}

inline std::vector<float> from_device_bf16(const DeviceBuffer& d, std::size_t n) {
  std::vector<std::uint16_t> bits(n);
  G4_CUDA_CHECK(cudaMemcpy(bits.data(), d.data(), n * 2, cudaMemcpyDeviceToHost));
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = bf16_to_f32(bits[i]);
  return v;
}

template <class T>
std::vector<T> from_device(const DeviceBuffer& d, std::size_t n) {
  std::vector<T> v(n);
  G4_CUDA_CHECK(cudaMemcpy(v.data(), d.data(), n * sizeof(T), cudaMemcpyDeviceToHost));
  return v;
}

// Fills with 0xff bytes: NaN for bf16 and fp32, -1 for int32.
inline void poison(DeviceBuffer& d) {
  G4_CUDA_CHECK(cudaMemset(d.data(), 0xff, d.bytes()));
  G4_CUDA_CHECK(cudaStreamSynchronize(cudaStreamLegacy));  // before kernels on a non-blocking stream write
}

// ||out - ref|| / ||ref||; NaN anywhere in out gives +inf (never passes).
inline double rel_error(const std::vector<float>& out, const std::vector<double>& ref) {
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i])) return INFINITY;
    num += (out[i] - ref[i]) * (out[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den == 0.0 ? std::sqrt(num) : std::sqrt(num / den);
}

}  // namespace g4::cuda::test
