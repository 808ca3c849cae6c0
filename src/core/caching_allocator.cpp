#include "core/caching_allocator.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace g4 {

CachingAllocatorBase::CachingAllocatorBase(FreeBlock free_block)
    : pool_(std::make_shared<Pool>(free_block)) {}

CachingAllocatorBase::Pool::~Pool() {
  for (auto& [size, blocks] : free)
    for (void* p : blocks) free_block(p);
}

std::uint64_t CachingAllocatorBase::size_class(std::uint64_t bytes) {
  constexpr std::uint64_t kSmall = 512, kLarge = 2ull << 20;
  const std::uint64_t unit = bytes < (1ull << 20) ? kSmall : kLarge;
  check(bytes <= UINT64_MAX - unit, "a tensor of ", bytes, " bytes cannot exist");
  return (bytes + unit - 1) / unit * unit;
}

std::shared_ptr<std::byte[]> CachingAllocatorBase::allocate(std::uint64_t bytes) {
  if (bytes == 0) return nullptr;
  const std::uint64_t size = size_class(bytes);
  void* block = nullptr;
  {
    std::lock_guard<std::mutex> lock(pool_->mutex);
    auto it = pool_->free.find(size);
    if (it != pool_->free.end() && !it->second.empty()) {
      block = it->second.back();
      it->second.pop_back();
      pool_->stats.cached -= size;
    }
  }
  if (!block) {
    block = device_allocate(size);
    if (!block) {
      release_cached();
      block = device_allocate(size);
    }
    if (!block) {
      const Stats s = stats();
      fail("out of ", device_name(device()), " memory: ", bytes, " bytes asked for, ", s.in_use,
           " in use by tensors, ", s.cached, " cached");
    }
    std::lock_guard<std::mutex> lock(pool_->mutex);
    ++pool_->stats.device_allocations;
  }
  device_zero(block, bytes);  // the tensor's bytes, not the whole class (up to 2 MiB more)
  {
    std::lock_guard<std::mutex> lock(pool_->mutex);
    pool_->stats.in_use += size;
    pool_->stats.peak_in_use = std::max(pool_->stats.peak_in_use, pool_->stats.in_use);
  }
  std::shared_ptr<Pool> pool = pool_;
  return std::shared_ptr<std::byte[]>(static_cast<std::byte*>(block), [pool, size](std::byte* p) {
    std::lock_guard<std::mutex> lock(pool->mutex);
    pool->free[size].push_back(p);
    pool->stats.in_use -= size;
    pool->stats.cached += size;
  });
}

CachingAllocatorBase::Stats CachingAllocatorBase::stats() const {
  std::lock_guard<std::mutex> lock(pool_->mutex);
  return pool_->stats;
}

std::uint64_t CachingAllocatorBase::available_bytes() const {
  return device_free_bytes() + stats().cached;
}

void CachingAllocatorBase::release_cached() {
  std::lock_guard<std::mutex> lock(pool_->mutex);
  for (auto& [size, blocks] : pool_->free)
    for (void* p : blocks) pool_->free_block(p);
  pool_->free.clear();
  pool_->stats.cached = 0;
}

HostCachingAllocator::HostCachingAllocator() : CachingAllocatorBase([](void* p) { std::free(p); }) {}

void* HostCachingAllocator::device_allocate(std::uint64_t bytes) {
  return allocate_host_block(bytes);
}

void HostCachingAllocator::device_zero(void* block, std::uint64_t bytes) {
  zero_host_block(block, bytes);
}

void HostCachingAllocator::copy_to_host(void* host, const void* mine, std::size_t bytes) const {
  if (bytes) std::memcpy(host, mine, bytes);
}

void HostCachingAllocator::copy_from_host(void* mine, const void* host, std::size_t bytes) const {
  if (bytes) std::memcpy(mine, host, bytes);
}

}  // namespace g4
