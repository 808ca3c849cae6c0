// caching_allocator.h: the GPU's Allocator (core/allocator.h) for tensors on the CUDA device: the cache of
// core/caching_allocator.h over cudaMalloc/cudaFree, so a training step's tensors stop calling them (both
// synchronise the device) after the first step.
//
// Invariants as CachingAllocatorBase's. Zero-filling is cudaMemsetAsync on the legacy default stream, without
// waiting: it is ordered before later work on that stream (where the op interface's kernels run) and on
// blocking streams; work on a non-blocking stream must first wait for the legacy stream (DeviceBuffer does).
// A block given back is reused at once: whoever frees a block that a non-blocking stream still uses must
// wait for that stream first.
#pragma once

#include <cstdint>

#include "core/caching_allocator.h"

namespace g4::cuda {

class CachingAllocator final : public CachingAllocatorBase {
 public:
  CachingAllocator();
  Device device() const override { return Device::cuda; }
  void copy_to_host(void* host, const void* mine, std::size_t bytes) const override;
  void copy_from_host(void* mine, const void* host, std::size_t bytes) const override;
  void synchronize() const override;

 protected:
  void* device_allocate(std::uint64_t bytes) override;
  void device_zero(void* block, std::uint64_t bytes) override;
  std::uint64_t device_free_bytes() const override;
};

// The process's CUDA allocator (device 0 of this process).
CachingAllocator& cuda_allocator();

}  // namespace g4::cuda
