#include "core/cuda/caching_allocator.h"

#include <cuda_runtime.h>

#include <algorithm>

#include "core/cuda/cuda_check.h"
#include "core/error.h"

namespace g4::cuda {

namespace {

void free_blocks(std::map<std::uint64_t, std::vector<void*>>& free) {
  for (auto& [size, blocks] : free)
    for (void* p : blocks) cudaFree(p);  // best effort: the driver may already be shutting down
  free.clear();
}

}  // namespace

CachingAllocator::CachingAllocator() : pool_(std::make_shared<Pool>()) {}

std::uint64_t CachingAllocator::size_class(std::uint64_t bytes) {
  constexpr std::uint64_t kSmall = 512, kLarge = 2ull << 20;
  const std::uint64_t unit = bytes < (1ull << 20) ? kSmall : kLarge;
  check(bytes <= UINT64_MAX - unit, "a device tensor of ", bytes, " bytes cannot exist");
  return (bytes + unit - 1) / unit * unit;
}

std::shared_ptr<std::byte[]> CachingAllocator::allocate(std::uint64_t bytes) {
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
    cudaError_t status = cudaMalloc(&block, size);
    if (status != cudaSuccess) {
      cudaGetLastError();  // clear the sticky-free error of a failed cudaMalloc
      release_cached();
      status = cudaMalloc(&block, size);
    }
    if (status != cudaSuccess) {
      cudaGetLastError();
      const Stats s = stats();
      fail("out of GPU memory: ", bytes, " bytes asked for, ", s.in_use, " in use by tensors, ", s.cached,
           " cached (", cudaGetErrorString(status), ")");
    }
    std::lock_guard<std::mutex> lock(pool_->mutex);
    ++pool_->stats.device_allocations;
  }
  G4_CUDA_CHECK(cudaMemsetAsync(block, 0, size));
  G4_CUDA_CHECK(cudaStreamSynchronize(nullptr));
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

void CachingAllocator::copy_to_host(void* host, const void* mine, std::size_t bytes) const {
  if (bytes) G4_CUDA_CHECK(cudaMemcpy(host, mine, bytes, cudaMemcpyDeviceToHost));
}

void CachingAllocator::copy_from_host(void* mine, const void* host, std::size_t bytes) const {
  if (bytes) G4_CUDA_CHECK(cudaMemcpy(mine, host, bytes, cudaMemcpyHostToDevice));
}

CachingAllocator::Stats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(pool_->mutex);
  return pool_->stats;
}

void CachingAllocator::release_cached() {
  std::lock_guard<std::mutex> lock(pool_->mutex);
  free_blocks(pool_->free);
  pool_->stats.cached = 0;
}

CachingAllocator& cuda_allocator() {
  static CachingAllocator* allocator = new CachingAllocator();  // never destroyed: tensors may outlive main
  return *allocator;
}

}  // namespace g4::cuda
