// caching_allocator.h: allocators that keep freed blocks by size class and hand them out again, so a training
// step's tensors stop reaching the system allocator after the first step (PyTorch's caching allocator does
// the same on the GPU). CachingAllocatorBase holds the cache; a device supplies its raw block calls: the host
// version is here, the GPU's in core/cuda/caching_allocator.h.
//
// Invariants: a block serves one tensor at a time; sizes are rounded up to a class (512 bytes below 1 MiB,
// then 2 MiB multiples) and a request is served only by a block of its own class, so waste is bounded by the
// rounding; allocate() zero-fills the bytes asked for; when the device refuses a block the cache is released
// and the request retried once, then a g4::Error says how much was asked, in use and cached. The cache lives
// as long as any block it handed out (the deleters hold it), and gives its free blocks back to the device
// when it dies.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "core/allocator.h"

namespace g4 {

class CachingAllocatorBase : public Allocator {
 public:
  struct Stats {
    std::uint64_t in_use = 0, cached = 0, peak_in_use = 0;
    std::int64_t device_allocations = 0;  // blocks taken from the device so far
  };

  std::shared_ptr<std::byte[]> allocate(std::uint64_t bytes) final;
  Stats stats() const;
  // The device's free memory (device_free_bytes) plus the blocks cached here.
  std::uint64_t available_bytes() const override;
  void release_cached();  // gives every free block back to the device

  static std::uint64_t size_class(std::uint64_t bytes);

 protected:
  // The device's calls: a block of `bytes` (nullptr when the device has no room), its release (a plain
  // function: blocks may be released after the allocator object is gone), and zero-filling.
  using FreeBlock = void (*)(void*);
  explicit CachingAllocatorBase(FreeBlock free_block);
  virtual void* device_allocate(std::uint64_t bytes) = 0;
  virtual void device_zero(void* block, std::uint64_t bytes) = 0;
  // Memory the device could still hand out beyond this cache (the host: its physical memory).
  virtual std::uint64_t device_free_bytes() const { return Allocator::available_bytes(); }

 private:
  struct Pool {
    explicit Pool(FreeBlock f) : free_block(f) {}
    ~Pool();
    FreeBlock free_block;
    std::mutex mutex;
    std::map<std::uint64_t, std::vector<void*>> free;  // size class -> free blocks
    Stats stats;
  };
  std::shared_ptr<Pool> pool_;
};

// The host's caching allocator: 64-byte-aligned heap blocks (within the machine's memory), zeroed in
// parallel.
class HostCachingAllocator final : public CachingAllocatorBase {
 public:
  HostCachingAllocator();
  Device device() const override { return Device::cpu; }
  void copy_to_host(void* host, const void* mine, std::size_t bytes) const override;
  void copy_from_host(void* mine, const void* host, std::size_t bytes) const override;

 protected:
  void* device_allocate(std::uint64_t bytes) override;
  void device_zero(void* block, std::uint64_t bytes) override;
};

}  // namespace g4
