// caching_allocator.h: the GPU's Allocator (core/allocator.h) for tensors on the CUDA device: the cache of
// core/caching_allocator.h over cudaMalloc/cudaFree, so a training step's tensors stop calling them (both
// synchronise the device) after the first step.
//
// Invariants as CachingAllocatorBase's; zero-filling is cudaMemsetAsync on the default stream, then a stream
// sync, so the memory is ready for any stream.
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

 protected:
  void* device_allocate(std::uint64_t bytes) override;
  void device_zero(void* block, std::uint64_t bytes) override;
};

// The process's CUDA allocator (device 0 of this process).
CachingAllocator& cuda_allocator();

}  // namespace g4::cuda
