// caching_allocator.h: the GPU's Allocator (core/allocator.h) for tensors on the CUDA device: freed blocks
// are kept by size class and handed out again, so a training step's tensors stop calling cudaMalloc/cudaFree
// after the first step (PyTorch's caching allocator does the same; both calls synchronise the device).
//
// Invariants: a block serves one tensor at a time; sizes are rounded up to a class (512 bytes below 1 MiB,
// then 2 MiB multiples), and a request is served only by a block of its own class, so waste is bounded by the
// rounding; allocate() zero-fills (cudaMemsetAsync on the default stream, then a stream sync, so the memory
// is ready for any stream); release_cached() gives every free block back to the driver; when cudaMalloc fails
// the cache is released and the allocation retried once, then a g4::Error says how much was asked, in use and
// cached. The cache lives as long as any block it handed out (the deleters hold it).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "core/allocator.h"

namespace g4::cuda {

class CachingAllocator final : public Allocator {
 public:
  CachingAllocator();
  Device device() const override { return Device::cuda; }
  std::shared_ptr<std::byte[]> allocate(std::uint64_t bytes) override;
  void copy_to_host(void* host, const void* mine, std::size_t bytes) const override;
  void copy_from_host(void* mine, const void* host, std::size_t bytes) const override;

  struct Stats {
    std::uint64_t in_use = 0, cached = 0, peak_in_use = 0;
    std::int64_t device_allocations = 0;  // cudaMalloc calls so far
  };
  Stats stats() const;
  void release_cached();

  static std::uint64_t size_class(std::uint64_t bytes);

 private:
  struct Pool {
    std::mutex mutex;
    std::map<std::uint64_t, std::vector<void*>> free;  // size class -> free blocks
    Stats stats;
  };
  std::shared_ptr<Pool> pool_;
};

// The process's CUDA allocator (device 0 of this process).
CachingAllocator& cuda_allocator();

}  // namespace g4::cuda
