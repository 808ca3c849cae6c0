#include "core/cuda/caching_allocator.h"

#include <cuda_runtime.h>

#include "core/cuda/cuda_check.h"

namespace g4::cuda {

// cudaFree is best effort: the driver may already be shutting down when the last block goes back.
CachingAllocator::CachingAllocator() : CachingAllocatorBase([](void* p) { cudaFree(p); }) {}

void* CachingAllocator::device_allocate(std::uint64_t bytes) {
  void* block = nullptr;
  if (cudaMalloc(&block, bytes) != cudaSuccess) {
    cudaGetLastError();  // clear the error of a failed cudaMalloc; the caller releases the cache and retries
    return nullptr;
  }
  return block;
}

void CachingAllocator::device_zero(void* block, std::uint64_t bytes) {
  G4_CUDA_CHECK(cudaMemsetAsync(block, 0, bytes, cudaStreamLegacy));
}

std::uint64_t CachingAllocator::device_free_bytes() const {
  std::size_t free = 0, total = 0;
  G4_CUDA_CHECK(cudaMemGetInfo(&free, &total));
  return free;
}

void CachingAllocator::synchronize() const {
  G4_CUDA_CHECK(cudaDeviceSynchronize());
}

void CachingAllocator::copy_to_host(void* host, const void* mine, std::size_t bytes) const {
  if (bytes) G4_CUDA_CHECK(cudaMemcpy(host, mine, bytes, cudaMemcpyDeviceToHost));
}

void CachingAllocator::copy_from_host(void* mine, const void* host, std::size_t bytes) const {
  if (bytes) G4_CUDA_CHECK(cudaMemcpy(mine, host, bytes, cudaMemcpyHostToDevice));
}

CachingAllocator& cuda_allocator() {
  static CachingAllocator* allocator = new CachingAllocator();  // never destroyed: tensors may outlive main
  return *allocator;
}

}  // namespace g4::cuda
