// device_buffer.cpp: the caching allocator's blocks behind DeviceBuffer, and the arena's bump allocation.
#include "ops/cuda/device_buffer.h"

#include <cuda_runtime.h>

#include "core/cuda/caching_allocator.h"
#include "core/cuda/cuda_check.h"
#include "core/error.h"

namespace g4::cuda {

DeviceBuffer::DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
  if (bytes > 0) {
    block_ = cuda_allocator().allocate(bytes);
    data_ = block_.get();
    G4_CUDA_CHECK(cudaStreamSynchronize(cudaStreamLegacy));  // the zero-fill, for any stream
  }
}

void* DeviceArena::alloc(std::size_t bytes) {
  std::size_t size = aligned(bytes);
  check(used_ + size <= buffer_.bytes(), "device arena full: asked ", bytes, " bytes with ", used_, " of ",
        buffer_.bytes(), " used (ops/cuda/device_buffer.cpp)");
  void* p = static_cast<char*>(buffer_.data()) + used_;
  used_ += size;
  return p;
}

}  // namespace g4::cuda
